"""The review workflow on the time-skipping server, at production durations (3 days to accept,
21 to review, a reminder 2 days before each deadline): offers to enough experts, a decline or a
missed deadline hands the task to the next expert, and divergent scores add one more."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from schemas.common import Actor
from schemas.notifications import NotificationKind
from schemas.programme import ProgrammeParams
from schemas.review import (
    DeclineRequest,
    OfferRequest,
    Recommendation,
    ReviewChange,
    ReviewCreate,
    ReviewOutcome,
    ReviewStart,
    ReviewState,
    SubmitRequest,
    Task,
    TaskAction,
    TaskStatus,
)
from tests.support import eventually
from tests.workflows.conftest import World
from workflows import ids
from workflows.review import ReviewWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.workflow]
DAY = timedelta(days=1)
ReviewHandle = WorkflowHandle[ReviewWorkflow, ReviewOutcome]


async def start_review(world: World, experts: int, **params: Any) -> ReviewHandle:
    for n in range(experts):
        world.expert(f"Dr. {n}", f"Institute {n}")
    application_id = str(uuid.uuid4())
    return await world.client.start_workflow(
        ReviewWorkflow.run,
        ReviewStart(
            application_id=application_id,
            programme_id=str(uuid.uuid4()),
            title="AI triage of chest X-rays",
            specialty="radiology",
            applicant_institution_id=world.applicant.institution_id,
            partner_institutions=[],
            params=ProgrammeParams.model_validate(params),
        ),
        id=ids.review(application_id),
        task_queue=world.task_queue,
    )


async def tasks(handle: ReviewHandle, ready: Callable[[list[Task]], bool]) -> list[Task]:
    """The review's tasks once `ready` holds for them (the workflow moves on its own)."""

    async def check() -> list[Task] | None:
        state: ReviewState = await handle.query(ReviewWorkflow.state)
        return state.tasks if ready(state.tasks) else None

    found: list[Task] = await eventually(check)
    return found


def offered(count: int) -> Callable[[list[Task]], bool]:
    return lambda ts: sum(t.status == TaskStatus.offered for t in ts) >= count


def by(world: World, task: Task) -> Actor:
    return next(e for e in world.fakes.experts if e.user_id == task.reviewer_id)


async def review(world: World, handle: ReviewHandle, task: Task, score: int) -> None:
    """The task's expert accepts it and scores every criterion `score`."""
    actor = by(world, task)
    await handle.execute_update(
        ReviewWorkflow.accept, TaskAction(actor=actor, task_id=task.task_id)
    )
    scores = {"clinical_value": score, "novelty": score, "feasibility": score}
    body = ReviewCreate(scores=scores, recommendation=Recommendation.fund, comments="Sound plan.")
    await handle.execute_update(
        ReviewWorkflow.submit, SubmitRequest(actor=actor, task_id=task.task_id, review=body)
    )


def changes(world: World, kind: str) -> list[ReviewChange]:
    return [c for c in world.fakes.told("record_change", ReviewChange) if c.kind == kind]


async def test_three_experts_are_offered_it_and_their_reviews_make_its_score(world: World) -> None:
    handle = await start_review(world, experts=4)
    offers = await tasks(handle, offered(3))
    assert [t.reviewer_name for t in offers] == ["Dr. 0", "Dr. 1", "Dr. 2"]
    assert all(t.accept_by - t.offered_at == 3 * DAY for t in offers)
    early = SubmitRequest(
        actor=by(world, offers[0]),
        task_id=offers[0].task_id,
        review=ReviewCreate(scores={}, recommendation=Recommendation.fund, comments="x"),
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ReviewWorkflow.submit, early)
    assert str(refused.value.cause) == "accept the task before submitting a review"

    for task, score in zip(offers, (8, 7, 6), strict=True):
        await review(world, handle, task, score)
    outcome: ReviewOutcome = await handle.result()
    assert outcome == ReviewOutcome(score=7.0, spread=2.0, reviews=3, extra_reviewer_added=False)
    assert len(world.fakes.told("offer_task", OfferRequest)) == 3  # Dr. 3 was never asked


async def test_a_decline_offers_the_task_to_the_next_expert(world: World) -> None:
    handle = await start_review(world, experts=4)
    first = (await tasks(handle, offered(3)))[0]
    decline = DeclineRequest(
        actor=by(world, first), task_id=first.task_id, reason="I advised this team."
    )
    declined = await handle.execute_update(ReviewWorkflow.decline, decline)
    assert declined.status == TaskStatus.declined

    now = await tasks(handle, offered(3))
    assert [(t.reviewer_name, t.status) for t in now] == [
        ("Dr. 0", TaskStatus.declined),
        ("Dr. 1", TaskStatus.offered),
        ("Dr. 2", TaskStatus.offered),
        ("Dr. 3", TaskStatus.offered),
    ]
    again = world.fakes.told("offer_task", OfferRequest)[-1]
    assert again.replaces == first.task_id
    assert again.reason == "Dr. 0 declined: I advised this team."


async def test_missed_deadlines_are_reminded_two_days_before_then_reassigned(
    world: World,
) -> None:
    handle = await start_review(world, experts=5)
    silent, reviewing, other = await tasks(handle, offered(3))
    await handle.execute_update(
        ReviewWorkflow.accept, TaskAction(actor=by(world, reviewing), task_id=reviewing.task_id)
    )
    await handle.execute_update(
        ReviewWorkflow.accept, TaskAction(actor=by(world, other), task_id=other.task_id)
    )

    await world.env.sleep(1 * DAY + timedelta(hours=1))  # the offer's reminder, 2 days early
    reminded = changes(world, "review_reminder")
    assert [c.detail["task_id"] for c in reminded] == [silent.task_id]
    assert reminded[0].notify[0].kind == NotificationKind.reminder
    await world.env.sleep(2 * DAY)  # 3 days: the offer lapses and goes to Dr. 3
    expired = changes(world, "review_expired")
    assert [c.detail["task_id"] for c in expired] == [silent.task_id]
    assert expired[0].reason is not None and "did not accept or decline" in expired[0].reason
    after_offer = await tasks(handle, offered(1))
    assert [t.reviewer_name for t in after_offer if t.status == TaskStatus.offered] == ["Dr. 3"]

    # Dr. 3 reviews at once; the two accepted on the first day have until day 21.
    await review(world, handle, after_offer[-1], 7)
    await world.env.sleep(17 * DAY)  # day 20
    assert len(changes(world, "review_expired")) == 1
    assert len(changes(world, "review_reminder")) == 3
    await world.env.sleep(1 * DAY)  # day 21
    expired_late = changes(world, "review_expired")[1:]
    lapsed = [c.detail["task_id"] for c in expired_late]
    assert sorted(lapsed) == sorted([reviewing.task_id, other.task_id])
    assert all("did not submit the review" in str(c.reason) for c in expired_late)
    state: ReviewState = await handle.query(ReviewWorkflow.state)
    assert [t.reviewer_name for t in state.tasks if t.status == TaskStatus.offered] == ["Dr. 4"]
    assert state.flag is not None and "no eligible radiology expert" in state.flag


async def test_divergent_scores_add_one_more_expert_once(world: World) -> None:
    handle = await start_review(world, experts=5, spread_threshold=3)
    for task, score in zip(await tasks(handle, offered(3)), (2, 3, 9), strict=True):
        await review(world, handle, task, score)
    extra = await tasks(handle, offered(1))
    assert changes(world, "review_extra_reviewer")[0].detail == {"spread": 7.0}
    await review(world, handle, extra[-1], 9)  # the spread stays over: no fifth expert
    outcome: ReviewOutcome = await handle.result()
    assert outcome.reviews == 4 and outcome.extra_reviewer_added and outcome.spread == 7.0
    assert len(world.fakes.told("offer_task", OfferRequest)) == 4
