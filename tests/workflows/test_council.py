"""The council session workflow on the time-skipping server: members vote, an item is decided
by the majority once the quorum has voted, approvals never exceed the programme's budget, and
each application's workflow hears its decision (stand-ins here: tests/workflows/fakes.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from schemas.common import Actor, Role
from schemas.council import (
    AgendaItem,
    Choice,
    CloseRequest,
    DecideRequest,
    Decision,
    Outcome,
    Reservation,
    SessionStart,
    VoteRecord,
    VoteRequest,
)
from tests.support import eventually
from tests.workflows.conftest import World, person
from tests.workflows.fakes import ApplicationStub
from workflows import ids
from workflows.council import CouncilSessionWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.workflow]
M = 1_000_000


@dataclass
class Session:
    """A council session of three members over an agenda of stand-in applications."""

    world: World
    handle: WorkflowHandle[CouncilSessionWorkflow, list[Decision]]
    members: list[Actor]
    applications: list[WorkflowHandle[ApplicationStub, None]]

    @property
    def items(self) -> list[str]:
        return [a.id.removeprefix("application-") for a in self.applications]

    async def vote(
        self, member: Actor, item: int, choice: Choice, amount_rub: int | None = None
    ) -> None:
        request = VoteRequest(
            actor=member,
            application_id=self.items[item],
            choice=choice,
            amount_rub=amount_rub,
            reason=f"{choice.value}: item {item + 1}",
        )
        await self.handle.execute_update(CouncilSessionWorkflow.vote, request)

    async def close(self) -> list[Decision]:
        closing = CloseRequest(actor=self.world.admin)
        decisions: list[Decision] = await self.handle.execute_update(
            CouncilSessionWorkflow.close, closing
        )
        return decisions

    async def heard(self, item: int) -> list[str]:
        async def decided() -> list[str] | None:
            heard: list[str] = await self.applications[item].query(ApplicationStub.heard)
            return heard if len(heard) == 2 else None

        found: list[str] = await eventually(decided)
        return found


@pytest_asyncio.fixture(loop_scope="session")
async def stand_ins(world: World) -> AsyncIterator[str]:
    """A worker for the applications' stand-ins, on a task queue of their own."""
    task_queue = f"{world.task_queue}-applications"
    async with Worker(
        world.client,
        task_queue=task_queue,
        workflows=[ApplicationStub],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield task_queue


async def open_session(
    world: World, stand_ins: str, requested_rub: list[int], *, budget_rub: int, quorum: int = 3
) -> Session:
    world.fakes.budget_rub = budget_rub
    applications = []
    for rank, amount in enumerate(requested_rub, start=1):
        application_id = str(uuid.uuid4())
        applications.append(
            await world.client.start_workflow(
                ApplicationStub.run, id=ids.application(application_id), task_queue=stand_ins
            )
        )
        world.fakes.agenda.append(
            AgendaItem(
                rank=rank,
                application_id=application_id,
                title=f"Project {rank}",
                institution_id=f"Clinic {rank}",
                requested_rub=amount,
                score=9.0 - rank,
                spread=1.0,
                reviews=[],
            )
        )
    members = [person(Role.council) for _ in range(3)]
    session_id = str(uuid.uuid4())
    handle = await world.client.start_workflow(
        CouncilSessionWorkflow.run,
        SessionStart(
            session_id=session_id,
            programme_id=str(uuid.uuid4()),
            name="March session",
            members=members,
            chair_id=world.admin.user_id,
            quorum=quorum,
            opened_by=world.admin,
            opened_at=datetime.now(UTC),
        ),
        id=ids.council(session_id),
        task_queue=world.task_queue,
    )
    await handle.execute_update(CouncilSessionWorkflow.opened)
    return Session(world, handle, members, applications)


async def test_the_majority_decides_and_approvals_stay_within_the_budget(
    world: World, stand_ins: str
) -> None:
    session = await open_session(world, stand_ins, [30 * M, 30 * M, 30 * M], budget_rub=50 * M)
    a, b, c = session.members
    await session.vote(a, 0, Choice.approve, amount_rub=25 * M)
    await session.vote(b, 0, Choice.approve)
    await session.vote(c, 0, Choice.reject)
    for member in (a, b, c):
        await session.vote(member, 1, Choice.approve)
    await session.vote(a, 2, Choice.reject)
    await session.vote(b, 2, Choice.reject)
    await session.vote(c, 2, Choice.approve)

    decisions = await session.close()
    assert [(d.outcome, d.amount_rub) for d in decisions] == [
        (Outcome.approved, 25 * M),
        (Outcome.deferred, None),
        (Outcome.rejected, None),
    ]
    assert decisions[1].reason == (
        "the programme has 25 000 000 RUB left; approving 30 000 000 RUB would overspend it"
    )
    assert decisions[2].reason == "rejected 2 of 3: reject: item 3; reject: item 3"
    assert world.fakes.reserved_rub == 25 * M
    assert await session.heard(0) == [
        f"on the agenda of {session.handle.id.removeprefix('council-')}",
        "approved 25000000: approved 2 of 3 for 25 000 000 RUB",
    ]
    assert (await session.heard(1))[1].startswith("deferred None: the programme has 25 000 000")
    assert len(world.fakes.told("record_vote", VoteRecord)) == 9
    assert await session.handle.result() == decisions


async def test_without_the_quorum_an_item_is_deferred_to_a_later_session(
    world: World, stand_ins: str
) -> None:
    session = await open_session(world, stand_ins, [30 * M], budget_rub=100 * M)
    a, b, _ = session.members
    await session.vote(a, 0, Choice.approve)
    await session.vote(b, 0, Choice.approve)
    (decision,) = await session.close()
    assert decision.outcome == Outcome.deferred
    assert decision.reason == "quorum not met: 2 of 3 votes"
    assert (await session.heard(0))[1] == "deferred None: quorum not met: 2 of 3 votes"
    assert world.fakes.reserved_rub == 0


async def test_the_chair_is_refused_an_approval_beyond_the_budget_and_the_item_stays_open(
    world: World, stand_ins: str
) -> None:
    session = await open_session(world, stand_ins, [30 * M], budget_rub=20 * M)
    for member in session.members:
        await session.vote(member, 0, Choice.approve)
    decide = DecideRequest(actor=world.admin, application_id=session.items[0])
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await session.handle.execute_update(CouncilSessionWorkflow.decide, decide)
    assert str(refused.value.cause) == (
        "the programme has 20 000 000 RUB left; approving 30 000 000 RUB would overspend it"
    )
    await session.vote(session.members[0], 0, Choice.approve, amount_rub=20 * M)
    decision = await session.handle.execute_update(CouncilSessionWorkflow.decide, decide)
    assert decision.outcome == Outcome.approved and decision.amount_rub == 20 * M
    assert world.fakes.reserved_rub == 20 * M
    assert await session.close() == [decision]


async def test_invalid_votes_are_refused_and_never_recorded(world: World, stand_ins: str) -> None:
    session = await open_session(world, stand_ins, [30 * M], budget_rub=100 * M)
    member = session.members[0]
    refusals = {
        "you are not a member of this council session": (
            person(Role.council),
            Choice.approve,
            None,
        ),
        "the amount 30 000 001 RUB is above the requested 30 000 000 RUB": (
            member,
            Choice.approve,
            30 * M + 1,
        ),
        "only an approval can name an amount": (member, Choice.reject, 1),
    }
    for reason, (who, choice, amount) in refusals.items():
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await session.vote(who, 0, choice, amount)
        assert str(refused.value.cause) == reason
    closing = CloseRequest(actor=member)
    with pytest.raises(WorkflowUpdateFailedError) as not_chair:
        await session.handle.execute_update(CouncilSessionWorkflow.close, closing)
    assert str(not_chair.value.cause) == "only the chair or an admin can do this"
    assert world.fakes.told("record_vote", VoteRecord) == []
    await session.close()


async def test_an_approval_for_an_application_that_ended_returns_its_money(
    world: World, stand_ins: str
) -> None:
    session = await open_session(world, stand_ins, [30 * M], budget_rub=100 * M)
    for member in session.members:
        await session.vote(member, 0, Choice.approve)
    await session.applications[0].terminate("withdrawn before the decision")
    (decision,) = await session.close()
    assert decision.outcome == Outcome.approved
    released = world.fakes.told("release", Reservation)
    assert [(r.application_id, r.amount_rub) for r in released] == [(session.items[0], 30 * M)]
    assert world.fakes.reserved_rub == 0
