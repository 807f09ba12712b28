"""The application workflow's intake on the time-skipping server: screening, the revision
window of 14 days and its expiry, a revision in time going on to review, and a withdrawal that
ends the review it was in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from schemas.application import (
    ApplicationContent,
    ApplicationStart,
    ApplicationStatus,
    RevisionRequest,
    StageChange,
    WithdrawalRequest,
)
from schemas.common import Stage
from schemas.review import OfferRequest, ReviewChange
from tests.support import application_body, eventually
from tests.workflows.conftest import World, application, person, programme
from workflows import ids
from workflows.application import ApplicationWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.workflow]
DAY = timedelta(days=1)
# 28 M in budget lines against 30 M requested: a gap the applicant can fix.
SHORT_LINES = [
    {"item": "Model training", "category": "direct_costs", "year": 1, "amount_rub": 18_000_000},
    {"item": "Integration", "category": "direct_costs", "year": 2, "amount_rub": 10_000_000},
]


async def submit(
    world: World, start: ApplicationStart
) -> tuple[WorkflowHandle[ApplicationWorkflow, Stage], ApplicationStatus]:
    handle = await world.client.start_workflow(
        ApplicationWorkflow.run,
        start,
        id=ids.application(start.application_id),
        task_queue=world.task_queue,
    )
    return handle, await handle.execute_update(ApplicationWorkflow.registered)


async def offered(world: World, count: int) -> list[OfferRequest] | None:
    """The review's offers once there are `count` of them (the review starts on its own)."""
    offers = world.fakes.told("offer_task", OfferRequest)
    return offers if len(offers) >= count else None


def stages(world: World) -> list[tuple[str, Stage]]:
    return [(c.kind, c.stage) for c in world.fakes.told("record_stage_change", StageChange)]


async def test_an_unrevised_application_expires_when_its_14_days_pass(world: World) -> None:
    handle, status = await submit(world, application(world, programme(), budget_lines=SHORT_LINES))
    assert status.stage == Stage.revision_requested
    assert [f.rule for f in status.findings] == ["budget_lines"]
    waiting = status.waiting_for
    assert waiting is not None and waiting.who == "applicant" and waiting.by is not None
    assert waiting.otherwise == "the application expires"
    asked_at = world.fakes.told("record_stage_change", StageChange)[-1].at
    assert waiting.by - asked_at == 14 * DAY

    await world.env.sleep(13 * DAY)
    assert (await handle.query(ApplicationWorkflow.status)).stage == Stage.revision_requested
    assert await handle.result() == Stage.expired
    expired = world.fakes.told("record_stage_change", StageChange)[-1]
    assert expired.reason == "no revision by the deadline" and expired.at >= waiting.by
    assert stages(world) == [
        ("screened", Stage.revision_requested),
        ("revision_missed", Stage.expired),
    ]
    assert not world.fakes.told("offer_task", OfferRequest)


async def test_a_revision_in_time_is_screened_again_and_offered_to_three_experts(
    world: World,
) -> None:
    for n in range(3):
        world.expert(f"Dr. {n}", f"Institute {n}")
    start = application(world, programme(), budget_lines=SHORT_LINES)
    handle, _ = await submit(world, start)
    await world.env.sleep(10 * DAY)
    fixed = application_body(start.programme.programme_id)
    del fixed["programme_id"]
    revision = RevisionRequest(
        actor=world.applicant, content=ApplicationContent.model_validate(fixed)
    )
    status = await handle.execute_update(ApplicationWorkflow.revise, revision)
    assert status.stage == Stage.under_review and status.findings == []
    assert stages(world) == [
        ("screened", Stage.revision_requested),
        ("resubmitted", Stage.screening),
        ("screened", Stage.under_review),
    ]
    offers = await eventually(lambda: offered(world, 3))
    assert [o.workflow_id for o in offers] == [ids.review(start.application_id)] * 3
    # The old deadline passes: the application stays in review.
    await world.env.sleep(5 * DAY)
    assert (await handle.query(ApplicationWorkflow.status)).stage == Stage.under_review


async def test_a_revision_is_the_applicants_alone(world: World) -> None:
    start = application(world, programme(), budget_lines=SHORT_LINES)
    handle, _ = await submit(world, start)
    stranger = RevisionRequest(actor=person(world.applicant.role), content=start.content)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ApplicationWorkflow.revise, stranger)
    assert str(refused.value.cause) == "only the applicant can revise this application"
    assert stages(world) == [("screened", Stage.revision_requested)]


async def test_withdrawing_in_review_ends_the_review_and_closes_its_open_tasks(
    world: World,
) -> None:
    for n in range(3):
        world.expert(f"Dr. {n}", f"Institute {n}")
    start = application(world, programme())
    handle, status = await submit(world, start)
    assert status.stage == Stage.under_review
    await eventually(lambda: offered(world, 3))

    someone_else = WithdrawalRequest(actor=person(world.applicant.role), reason="Not mine.")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ApplicationWorkflow.withdraw, someone_else)
    assert str(refused.value.cause) == "only the applicant or an admin can withdraw"

    mine = WithdrawalRequest(actor=world.applicant, reason="We found other funding.")
    withdrawn = await handle.execute_update(ApplicationWorkflow.withdraw, mine)
    assert withdrawn.stage == Stage.withdrawn and withdrawn.waiting_for is None
    assert await handle.result() == Stage.withdrawn
    assert stages(world)[-1] == ("withdrawn", Stage.withdrawn)
    assert world.fakes.told("record_stage_change", StageChange)[-1].reason == mine.reason
    review = world.fakes.told("record_change", ReviewChange)[-1]
    assert review.kind == "review_cancelled" and review.cancel_open_tasks
    assert review.reason == "the application left review"
