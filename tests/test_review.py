"""Expert review as reviewers and admins live it: offers, accepting, declining, deadlines,
reminders, reassignment, scores, blindness, flags and notifications, all through the API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from schemas.common import Role
from schemas.review import ReviewCreate, SubmitRequest, TaskAction
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    create_programme,
    eventually,
)
from workflows.review import ReviewWorkflow

pytestmark = [SESSION, pytest.mark.system]

GOOD = {"clinical_value": 8, "novelty": 7, "feasibility": 6}  # weighted: 7.1


class Competition:
    """One programme with a specialty of its own, so that only this test's experts match."""

    def __init__(self, stack: Stack, admin: User, make_user: UserFactory) -> None:
        self.stack, self.admin, self.make_user = stack, admin, make_user
        self.specialty = f"cardiology-{uuid.uuid4().hex[:6]}"
        self.programme: dict[str, Any] = {}

    async def open(self, *, programme: dict[str, Any] | None = None, **params: Any) -> None:
        self.programme = await create_programme(
            self.stack,
            self.admin,
            **(programme or {}),
            specialties=[self.specialty],
            params={
                "revision_window": 3600,
                "review_acceptance_window": 3600,
                "review_deadline": 7200,
                "reminder_lead_time": 600,
                **params,
            },
        )

    async def reviewer(self, institution: str | None = None, **kw: Any) -> User:
        return await self.make_user(
            Role.reviewer,
            specialty=kw.get("specialty", self.specialty),
            institution=institution or f"Hospital {uuid.uuid4().hex[:6]}",
        )

    async def submit(self, applicant: User, **overrides: Any) -> dict[str, Any]:
        body = application_body(self.programme["id"], specialty=self.specialty, **overrides)
        response = await self.stack.api.post(
            "/v1/applications", json=body, headers=applicant.headers
        )
        assert response.status_code == 201, response.text
        app: dict[str, Any] = response.json()
        assert app["stage"] == "under_review"
        return app


@pytest.fixture
def competition(stack: Stack, admin: User, make_user: UserFactory) -> Competition:
    return Competition(stack, admin, make_user)


async def inbox(stack: Stack, reviewer: User) -> list[dict[str, Any]]:
    response = await stack.api.get("/v1/reviews", headers=reviewer.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def task_for(stack: Stack, reviewer: User, application_id: str) -> dict[str, Any]:
    """The reviewer's open task for the application, once it has been offered."""

    async def find() -> dict[str, Any] | None:
        return next(
            (t for t in await inbox(stack, reviewer) if t["application_id"] == application_id),
            None,
        )

    found: dict[str, Any] = await eventually(find)
    return found


async def offered_to(stack: Stack, admin: User, application_id: str) -> list[tuple[str, str]]:
    response = await stack.api.get(
        f"/v1/admin/applications/{application_id}/reviews", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    return [(t["reviewer_id"], t["status"]) for t in response.json()["tasks"]]


async def act(stack: Stack, reviewer: User, task_id: str, action: str, body: Any = None) -> Any:
    return await stack.api.post(
        f"/v1/reviews/{task_id}/{action}", json=body, headers=reviewer.headers
    )


async def review(
    stack: Stack, reviewer: User, application_id: str, scores: dict[str, int] = GOOD
) -> dict[str, Any]:
    """Accept the offered task and submit a review, as a reviewer does."""
    task = await task_for(stack, reviewer, application_id)
    accepted = await act(stack, reviewer, task["task_id"], "acceptance")
    assert accepted.status_code == 200, accepted.text
    submitted = await act(
        stack,
        reviewer,
        task["task_id"],
        "review",
        {"scores": scores, "recommendation": "fund", "comments": "Sound plan."},
    )
    assert submitted.status_code == 200, submitted.text
    result: dict[str, Any] = submitted.json()
    return result


async def application(stack: Stack, user: User, application_id: str) -> dict[str, Any]:
    response = await stack.api.get(f"/v1/applications/{application_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def reaches(stack: Stack, user: User, application_id: str, stage: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        app = await application(stack, user, application_id)
        return app if app["stage"] == stage else None

    found: dict[str, Any] = await eventually(check, within=20)
    return found


async def notes(stack: Stack, user: User) -> list[dict[str, Any]]:
    response = await stack.api.get("/v1/me/notifications", headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- assignment ------------------------------------------------------------------------------


async def test_assignment_honours_specialty_conflicts_and_load(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=3)
    own = await competition.reviewer(institution=applicant.institution_id)
    partner = await competition.reviewer(institution="Sechenov University")
    elsewhere = await competition.reviewer(specialty="dermatology")
    eligible = sorted([await competition.reviewer() for _ in range(4)], key=lambda u: u.id)

    async def offers(application_id: str, count: int) -> list[str] | None:
        found = await offered_to(stack, admin, application_id)
        return [r for r, _ in found] if len(found) == count else None

    first = await competition.submit(applicant, partner_institutions=["Sechenov University"])
    first_offers = set(await eventually(lambda: offers(first["id"], 3)))
    # Nobody has open tasks yet: ties are broken by id, so the three lowest ids.
    assert first_offers == {u.id for u in eligible[:3]}

    second = await competition.submit(applicant, partner_institutions=["Sechenov University"])
    second_offers = await eventually(lambda: offers(second["id"], 3))
    # The one expert without an open task goes first, then the least loaded by id.
    assert second_offers[0] == eligible[3].id
    assert set(second_offers) == {eligible[3].id, eligible[0].id, eligible[1].id}
    for never in (own, partner, elsewhere):
        assert await inbox(stack, never) == []
    offered = await inbox(stack, eligible[0])
    assert {t["application_id"] for t in offered} == {first["id"], second["id"]}
    assert all(t["expected"] == "accept or decline the task" for t in offered)


# --- the whole path --------------------------------------------------------------------------


async def test_three_reviews_make_the_application_reviewed_with_its_weighted_score(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=3)
    reviewers = [await competition.reviewer() for _ in range(3)]
    app = await competition.submit(applicant)
    scores = [
        {"clinical_value": 8, "novelty": 7, "feasibility": 6},  # 7.1
        {"clinical_value": 9, "novelty": 8, "feasibility": 8},  # 8.4
        {"clinical_value": 7, "novelty": 6, "feasibility": 7},  # 6.7
    ]
    for reviewer, score in zip(reviewers, scores, strict=True):
        done = await review(stack, reviewer, app["id"], score)
        assert done["status"] == "submitted" and done["expected"] == "nothing"
    reviewed = await reaches(stack, applicant, app["id"], "reviewed")
    assert reviewed["review_score"] == pytest.approx((7.1 + 8.4 + 6.7) / 3, abs=1e-4)
    assert reviewed["review_spread"] == pytest.approx(8.4 - 6.7, abs=1e-4)
    assert reviewed["reviews_submitted"] == 3
    # Nothing is left in the reviewers' inboxes.
    for reviewer in reviewers:
        assert await inbox(stack, reviewer) == []


# --- declining, expiring, reassigning --------------------------------------------------------


async def test_a_declared_conflict_reassigns_and_is_never_offered_again(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    first, second = sorted([await competition.reviewer() for _ in range(2)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    task = await task_for(stack, first, app["id"])
    declined = await act(
        stack,
        first,
        task["task_id"],
        "decline",
        {"reason": "I advised this team last year.", "conflict_of_interest": True},
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    await task_for(stack, second, app["id"])  # reassigned at once
    assert await inbox(stack, first) == []
    # The second one declines too: nobody eligible is left, and the first is not asked again.
    task2 = await task_for(stack, second, app["id"])
    await act(stack, second, task2["task_id"], "decline", {"reason": "On leave until March."})
    flagged = await eventually(lambda: flagged_reason(stack, admin, app["id"]))
    assert "no eligible" in flagged
    assert await inbox(stack, first) == []
    timeline = await stack.api.get(f"/v1/applications/{app['id']}/timeline", headers=admin.headers)
    events = [(e["kind"], e["reason"]) for e in timeline.json()]
    assert ("review_declined", "conflict of interest: I advised this team last year.") in events
    reassigned = [r for k, r in events if k == "review_offered" and r]
    assert reassigned and reassigned[0].endswith(
        "declined: conflict of interest: I advised this team last year."
    )


async def flagged_reason(stack: Stack, admin: User, application_id: str) -> str | None:
    """The application's reason in the admins' flagged queue, read page by page: the session's
    other tests leave flagged applications of their own, longer waiting, ahead of it."""
    params: dict[str, str | int] = {"limit": 200}
    while True:
        response = await stack.api.get(
            "/v1/admin/applications/flagged", params=params, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        for f in page["items"]:
            if f["application_id"] == application_id:
                return str(f["flag_reason"])
        if not page["next_cursor"]:
            return None
        params["cursor"] = page["next_cursor"]


@pytest.mark.slow
async def test_a_missed_acceptance_window_reminds_then_reassigns(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1, review_acceptance_window=3, reminder_lead_time=1.5)
    silent, next_one = sorted([await competition.reviewer() for _ in range(2)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    await task_for(stack, silent, app["id"])
    await task_for(stack, next_one, app["id"])  # after the window, it is someone else's
    kinds = [n["kind"] for n in await notes(stack, silent)]
    assert kinds == ["task_expired", "reminder", "task_offered"]  # newest first
    assert [n["kind"] for n in await notes(stack, next_one)] == ["task_reassigned"]
    assert (await offered_to(stack, admin, app["id"]))[0] == (silent.id, "expired")


@pytest.mark.slow
async def test_a_missed_review_deadline_reminds_then_reassigns(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1, review_deadline=3, reminder_lead_time=1.5)
    late, next_one = sorted([await competition.reviewer() for _ in range(2)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    task = await task_for(stack, late, app["id"])
    accepted = await act(stack, late, task["task_id"], "acceptance")
    assert accepted.json()["expected"] == "submit your review"
    due = datetime.fromisoformat(accepted.json()["deadline"])
    assert timedelta(seconds=2) < due - datetime.now(UTC) <= timedelta(seconds=3)
    await task_for(stack, next_one, app["id"])
    assert [n["kind"] for n in await notes(stack, late)] == [
        "task_expired",
        "reminder",
        "task_offered",
    ]
    too_late = await act(
        stack,
        late,
        task["task_id"],
        "review",
        {"scores": GOOD, "recommendation": "fund", "comments": "Here it is."},
    )
    assert (
        too_late.status_code == 409 and too_late.json()["detail"] == "this review task is expired"
    )


async def test_reassigning_to_the_next_eligible_when_nobody_is_left_is_refused_and_changes_nothing(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    only = await competition.reviewer()
    app = await competition.submit(applicant)
    task = await task_for(stack, only, app["id"])
    refused = await stack.api.post(
        f"/v1/admin/reviews/{task['task_id']}/reassignment",
        json={"reason": "Too slow."},
        headers=admin.headers,
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        f"no eligible {competition.specialty} expert is left to take this task over: "
        f"it stays with {only.name}"
    )
    # The reviewer keeps the task, is told nothing, and can go on with it.
    assert await offered_to(stack, admin, app["id"]) == [(only.id, "offered")]
    assert [n["kind"] for n in await notes(stack, only)] == ["task_offered"]
    assert await flagged_reason(stack, admin, app["id"]) is None
    timeline = await stack.api.get(f"/v1/applications/{app['id']}/timeline", headers=admin.headers)
    assert "review_reassigned" not in [e["kind"] for e in timeline.json()]
    await review(stack, only, app["id"])
    await reaches(stack, applicant, app["id"], "reviewed")


@pytest.mark.slow
async def test_an_admin_extends_a_deadline_and_the_task_does_not_expire(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1, review_acceptance_window=3, reminder_lead_time=1)
    reviewer = await competition.reviewer()
    await competition.reviewer()
    app = await competition.submit(applicant)
    task = await task_for(stack, reviewer, app["id"])
    until = datetime.now(UTC) + timedelta(hours=2)
    extended = await stack.api.post(
        f"/v1/admin/reviews/{task['task_id']}/deadline",
        json={"until": until.isoformat(), "reason": "Reviewer travelling this week."},
        headers=admin.headers,
    )
    assert extended.status_code == 200, extended.text
    assert datetime.fromisoformat(extended.json()["deadline"]) == until
    earlier = await stack.api.post(
        f"/v1/admin/reviews/{task['task_id']}/deadline",
        json={"until": datetime.now(UTC).isoformat(), "reason": "oops"},
        headers=admin.headers,
    )
    assert earlier.status_code == 409
    assert "later than the current one" in earlier.json()["detail"]
    not_admin = await stack.api.post(
        f"/v1/admin/reviews/{task['task_id']}/deadline",
        json={"until": until.isoformat(), "reason": "me"},
        headers=reviewer.headers,
    )
    assert not_admin.status_code == 403
    await eventually(lambda: notes(stack, reviewer))
    assert (await notes(stack, reviewer))[0]["kind"] == "deadline_extended"
    # Well past the original window, the task is still the reviewer's.
    await asyncio.sleep(4)
    assert [t["task_id"] for t in await inbox(stack, reviewer)] == [task["task_id"]]


# --- scores ----------------------------------------------------------------------------------


async def test_divergent_scores_add_one_more_expert_once(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=2, spread_threshold=3)
    reviewers = sorted([await competition.reviewer() for _ in range(4)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    await review(
        stack, reviewers[0], app["id"], {"clinical_value": 9, "novelty": 9, "feasibility": 9}
    )
    await review(
        stack, reviewers[1], app["id"], {"clinical_value": 2, "novelty": 2, "feasibility": 2}
    )
    # Spread 7 > 3: a third expert is asked; whatever the third says, no fourth.
    await review(
        stack, reviewers[2], app["id"], {"clinical_value": 9, "novelty": 1, "feasibility": 1}
    )
    reviewed = await reaches(stack, applicant, app["id"], "reviewed")
    assert reviewed["reviews_submitted"] == 3
    assert reviewed["review_score"] == pytest.approx((9 + 2 + 4.2) / 3, abs=1e-4)
    assert await inbox(stack, reviewers[3]) == []
    timeline = await stack.api.get(
        f"/v1/applications/{app['id']}/timeline", headers=applicant.headers
    )
    kinds = [e["kind"] for e in timeline.json()]
    assert kinds.count("review_extra_reviewer") == 1 and kinds.count("review_submitted") == 3


async def test_every_invalid_submission_is_refused_and_never_enters_the_history(
    competition: Competition, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=2)
    mine, other = sorted([await competition.reviewer() for _ in range(2)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    task = (await task_for(stack, mine, app["id"]))["task_id"]
    other_task = (await task_for(stack, other, app["id"]))["task_id"]

    def body(scores: dict[str, int]) -> dict[str, Any]:
        return {"scores": scores, "recommendation": "fund", "comments": "ok"}

    not_accepted = await act(stack, mine, task, "review", body(GOOD))
    assert not_accepted.status_code == 409
    assert not_accepted.json()["detail"] == "accept the task before submitting a review"
    assert (await act(stack, mine, task, "acceptance")).status_code == 200
    # Accepting again (a double click, a retry after a 503) joins the first acceptance.
    again = await act(stack, mine, task, "acceptance")
    assert again.status_code == 200 and again.json()["status"] == "accepted", again.text
    cases = {
        "missing scores for feasibility": {"clinical_value": 5, "novelty": 5},
        "unknown criteria price": {**GOOD, "price": 3},
        "scores must be integers from 1 to 10: novelty=11": {**GOOD, "novelty": 11},
        "scores must be integers from 1 to 10: clinical_value=0": {**GOOD, "clinical_value": 0},
    }
    for message, scores in cases.items():
        refused = await act(stack, mine, task, "review", body(scores))
        assert refused.status_code == 422, refused.text
        assert message in refused.json()["detail"]
    bad_recommendation = await act(
        stack, mine, task, "review", {**body(GOOD), "recommendation": "maybe"}
    )
    assert bad_recommendation.status_code == 422
    not_yours = await act(stack, mine, other_task, "review", body(GOOD))
    assert not_yours.status_code == 404
    assert (await act(stack, applicant, task, "acceptance")).status_code == 403
    # The validator itself refuses what the API would have caught, for any other client.
    handle = stack.client.get_workflow_handle(f"review-{app['id']}")
    me = await stack.api.get("/v1/me", headers=mine.headers)
    actor = {"user_id": mine.id, "role": "reviewer", "name": me.json()["name"]}
    with pytest.raises(WorkflowUpdateFailedError) as refused_update:
        await handle.execute_update(
            ReviewWorkflow.submit,
            SubmitRequest.model_validate(
                {
                    "actor": actor,
                    "task_id": task,
                    "review": ReviewCreate.model_validate(body({**GOOD, "novelty": 99})),
                }
            ),
        )
    assert "novelty=99" in str(refused_update.value.cause)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            ReviewWorkflow.accept,
            TaskAction.model_validate({"actor": actor, "task_id": other_task}),
        )
    assert (await act(stack, mine, task, "review", body(GOOD))).status_code == 200
    # The same review sent again joins the first; another one is refused.
    resent = await act(stack, mine, task, "review", body(GOOD))
    assert resent.status_code == 200 and resent.json()["status"] == "submitted", resent.text
    second = await act(stack, mine, task, "review", body({**GOOD, "novelty": 2}))
    assert second.status_code == 409
    assert second.json()["detail"] == "this review has already been submitted"
    # Only the actions that were allowed are in the workflow's history, each once.
    history = await handle.fetch_history()
    accepted_updates = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted_updates == ["accept", "submit"]


# --- blindness -------------------------------------------------------------------------------


async def test_reviews_are_blind_until_your_own_is_in_and_applicants_never_see_reviewers(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=2)
    first, second = sorted([await competition.reviewer() for _ in range(2)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    await review(stack, first, app["id"])
    task = await task_for(stack, second, app["id"])
    before = await stack.api.get(f"/v1/reviews/{task['task_id']}", headers=second.headers)
    assert before.status_code == 200, before.text
    assert before.json()["other_reviews"] is None and before.json()["my_review"] is None
    assert before.json()["application"]["title"] == app["content"]["title"]
    assert [c["name"] for c in before.json()["rubric"]] == [
        "clinical_value",
        "novelty",
        "feasibility",
    ]
    await review(stack, second, app["id"])
    after = await stack.api.get(f"/v1/reviews/{task['task_id']}", headers=second.headers)
    others = after.json()["other_reviews"]
    assert len(others) == 1 and others[0]["comments"] == "Sound plan."
    await reaches(stack, applicant, app["id"], "reviewed")
    seen_by_applicant = " ".join(
        [
            (await stack.api.get(f"/v1/applications/{app['id']}", headers=applicant.headers)).text,
            (
                await stack.api.get(
                    f"/v1/applications/{app['id']}/timeline", headers=applicant.headers
                )
            ).text,
        ]
    )
    for reviewer in (first, second):
        assert reviewer.id not in seen_by_applicant and reviewer.name not in seen_by_applicant
    assert (
        await stack.api.get(f"/v1/reviews/{task['task_id']}", headers=applicant.headers)
    ).status_code == 403
    assert (
        await stack.api.get(f"/v1/reviews/{task['task_id']}", headers=first.headers)
    ).status_code == 404


# --- flags -----------------------------------------------------------------------------------


async def test_no_eligible_expert_flags_the_application_until_an_admin_adds_one(
    competition: Competition, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=2)
    only = await competition.reviewer()
    conflicted = await competition.reviewer(institution=applicant.institution_id)
    app = await competition.submit(applicant)
    reason = await eventually(lambda: flagged_reason(stack, admin, app["id"]))
    assert reason.startswith(f"no eligible {competition.specialty} expert is left")
    assert "1 review(s) missing" in reason
    assert any(n["kind"] == "flagged" for n in await notes(stack, admin))
    refused = await stack.api.post(
        f"/v1/admin/applications/{app['id']}/reviewers",
        json={"reviewer_id": conflicted.id, "reason": "Only one left"},
        headers=admin.headers,
    )
    assert refused.status_code == 409 and "conflict of interest" in refused.json()["detail"]
    twice = await stack.api.post(
        f"/v1/admin/applications/{app['id']}/reviewers",
        json={"reviewer_id": only.id, "reason": "Again"},
        headers=admin.headers,
    )
    assert twice.status_code == 409 and "already been offered" in twice.json()["detail"]
    recruited = await make_user(Role.reviewer, specialty="oncology")  # any specialty, by hand
    added = await stack.api.post(
        f"/v1/admin/applications/{app['id']}/reviewers",
        json={"reviewer_id": recruited.id, "reason": "Agreed by phone to help."},
        headers=admin.headers,
    )
    assert added.status_code == 201, added.text
    assert added.json()["reviewer_id"] == recruited.id
    assert await flagged_reason(stack, admin, app["id"]) is None
    await review(stack, only, app["id"])
    await review(stack, recruited, app["id"])
    await reaches(stack, applicant, app["id"], "reviewed")


async def test_withdrawing_during_review_cancels_the_open_tasks(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    reviewer = await competition.reviewer()
    app = await competition.submit(applicant)
    await task_for(stack, reviewer, app["id"])
    withdrawn = await stack.api.post(
        f"/v1/applications/{app['id']}/withdrawal",
        json={"reason": "Funded elsewhere."},
        headers=applicant.headers,
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["stage"] == "withdrawn"

    async def cancelled() -> bool:
        return await offered_to(stack, admin, app["id"]) == [(reviewer.id, "cancelled")]

    await eventually(cancelled)
    assert await inbox(stack, reviewer) == []


# --- notifications ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_every_notification_is_delivered_exactly_once(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1, review_acceptance_window=2, reminder_lead_time=1)
    _slow, quick = sorted([await competition.reviewer() for _ in range(2)], key=lambda u: u.id)
    app = await competition.submit(applicant)
    await review(stack, quick, app["id"])
    await reaches(stack, applicant, app["id"], "reviewed")
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, key, delivered_at FROM notifications WHERE application_id = $1::uuid",
            app["id"],
        )
    assert len(rows) == 4  # slow: offered, reminder, expired; quick: offered
    assert all(r["delivered_at"] is not None for r in rows)
    sent = sorted(n.id for n in stack.sender.sent if n.application_id == app["id"])
    assert sent == sorted(r["id"] for r in rows)
