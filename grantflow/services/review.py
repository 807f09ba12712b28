"""Expert review: the reviewer's inbox, a task with its application, accept, decline and
review; and the admins' interventions on it (add or reassign a reviewer, move a task's
deadline) with what they need to find them (the flagged queue, overdue tasks, an
application's tasks and reviews).

Every action is an Update of the application's review workflow; its validator refuses what
is not possible (not your task, not accepted yet, already submitted, bad scores) before it
enters the history, and the refusal is a Conflict. Another reviewer's task is NotFound."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel
from temporalio.client import WorkflowUpdateFailedError
from temporalio.workflow import UpdateMethodMultiParam

from grantflow.services.application import parse_id
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Conflict, Invalid, NotFound, refused_update
from grantflow.services.updates import answered, send
from grantflow.store import application, review
from grantflow.store.review import ClosedTask as ClosedTask  # what the pages show
from grantflow.store.review import ReviewDraft as ReviewDraft
from grantflow.store.review import inbox_item
from schemas.admin import ReassignCreate, ReassignRequest
from schemas.common import Role
from schemas.review import (
    AddReviewerRequest,
    ApplicationReviews,
    DeadlineExtension,
    DeclineCreate,
    DeclineRequest,
    ExtendRequest,
    FlaggedPage,
    InboxItem,
    InboxPage,
    ReviewCreate,
    ReviewerAdd,
    SubmitRequest,
    Task,
    TaskAction,
    TaskDetail,
)
from workflows import ids
from workflows.review import UNKNOWN_TASK, ReviewWorkflow, review_problems

NOT_FOUND = "review task not found"
APPLICATION_NOT_FOUND = "application not found"
# A task is on record a moment before its workflow has taken the offer in.
_UNKNOWN_TASK_RETRIES = 20
_UNKNOWN_TASK_PAUSE = 0.05

Request = TypeVar("Request", bound=BaseModel)
Item = TypeVar("Item")


async def _own_task(res: Resources, caller: Caller, task_id: str) -> asyncpg.Record:
    """The task if the caller may act on it (its reviewer, or an admin); anyone else's is
    NotFound, so that ids reveal nothing."""
    row = await review.task(res.pool, parse_id(task_id, NOT_FOUND))
    if row is None or not (caller.is_admin or str(row["reviewer_id"]) == caller.actor.user_id):
        raise NotFound(NOT_FOUND)
    return row


async def _send(
    res: Resources,
    row: asyncpg.Record,
    update: UpdateMethodMultiParam[[ReviewWorkflow, Request], Task],
    request: Request,
    action: str | None = None,
) -> Task:
    """Send an Update on the task in `row`; returns the task as the workflow answered. An
    Update that arrives before the workflow has taken the offer in is retried briefly instead
    of refused.

    A reviewer's `action` makes the Update's id: its kind, the task and what was sent. The same
    action sent again (a double click, or a retry after a 503 whose Update the server kept and
    ran later) joins the first one and gets its answer, instead of being refused as a second
    accept or a second review of the task; a different review of a submitted task is still
    refused."""
    workflow_id = ids.review(row["application_id"])
    handle = res.client.get_workflow_handle_for(ReviewWorkflow.run, workflow_id)
    update_id = None
    if action is not None:
        sent = request.model_dump_json(exclude={"actor"}).encode()
        update_id = f"{action}-{hashlib.sha256(sent).hexdigest()[:32]}"

    async def retried() -> Task:
        for _ in range(_UNKNOWN_TASK_RETRIES - 1):
            try:
                return await handle.execute_update(update, request, id=update_id)
            except WorkflowUpdateFailedError as exc:
                if refused_update(exc) != UNKNOWN_TASK:
                    raise
            await asyncio.sleep(_UNKNOWN_TASK_PAUSE)
        return await handle.execute_update(update, request, id=update_id)

    return await answered(res, workflow_id, retried())


async def _paged(fetch: Awaitable[tuple[list[Item], str | None]]) -> tuple[list[Item], str | None]:
    """A page from the store; a cursor it cannot read is Invalid."""
    try:
        return await fetch
    except ValueError as exc:
        raise Invalid(str(exc)) from None


# --- the reviewer's path ---------------------------------------------------------------------


async def inbox(
    res: Resources, caller: Caller, *, cursor: str | None = None, limit: int = 50
) -> InboxPage:
    """The reviewer's open tasks, soonest deadline first: what is expected and by when. A
    page's `next_cursor` given as `cursor` gives the next page (a bad cursor is Invalid)."""
    require(caller, Role.reviewer)
    reviewer_id = uuid.UUID(caller.actor.user_id)
    items, next_cursor = await _paged(
        review.inbox(res.pool, reviewer_id, cursor=cursor, limit=limit)
    )
    return InboxPage(items=items, next_cursor=next_cursor)


async def get(res: Resources, caller: Caller, task_id: str) -> TaskDetail:
    """The task, the application to review, the programme's rubric and score range, the
    reviewer's own review once submitted, and the other reviews only after that (blind
    review; an admin sees them all). Its reviewer and admins only."""
    require(caller, Role.reviewer, Role.admin)
    row = await _own_task(res, caller, task_id)
    params = review.task_params(row)
    found = await application.get(res.pool, row["application_id"])
    assert found is not None  # a task's application is never deleted
    reviewer = str(row["reviewer_id"])
    all_reviews = await review.reviews(res.pool, row["application_id"])
    mine = next((r for author, r in all_reviews if author == reviewer), None)
    others = None
    if mine is not None or caller.is_admin:
        others = [r for author, r in all_reviews if author != reviewer]
    return TaskDetail(
        task=inbox_item(row, with_reviewer=caller.is_admin),
        application=found.content.model_dump(mode="json"),
        rubric=params.rubric,
        score_range=[params.score_min, params.score_max],
        my_review=mine,
        other_reviews=others,
    )


async def accept(res: Resources, caller: Caller, task_id: str) -> InboxItem:
    """Accept an offered task (its reviewer): the review deadline starts now and shows as the
    task's `deadline`. Refused (Conflict) once the task is no longer offered."""
    require(caller, Role.reviewer)
    row = await _own_task(res, caller, task_id)
    request = TaskAction(actor=caller.actor, task_id=task_id)
    task = await _send(res, row, ReviewWorkflow.accept, request, "accept")
    return review.answered(row, task, with_reviewer=caller.is_admin)


async def decline(res: Resources, caller: Caller, task_id: str, body: DeclineCreate) -> InboxItem:
    """Decline an open task with a reason (its reviewer; also after accepting, e.g. on finding
    a conflict of interest). The application goes to the next eligible expert at once."""
    require(caller, Role.reviewer)
    row = await _own_task(res, caller, task_id)
    request = DeclineRequest(
        actor=caller.actor,
        task_id=task_id,
        reason=body.reason,
        conflict_of_interest=body.conflict_of_interest,
    )
    task = await _send(res, row, ReviewWorkflow.decline, request, "decline")
    return review.answered(row, task, with_reviewer=caller.is_admin)


async def submit(res: Resources, caller: Caller, task_id: str, body: ReviewCreate) -> InboxItem:
    """Submit the review of an accepted task (its reviewer): a score for every criterion of
    the rubric, within the programme's range (else Invalid), a recommendation and comments.
    One review per task; it cannot be changed afterwards (Conflict)."""
    require(caller, Role.reviewer)
    row = await _own_task(res, caller, task_id)
    params = review.task_params(row)
    if problems := review_problems(body, params.rubric, params.score_min, params.score_max):
        raise Invalid(problems)
    request = SubmitRequest(actor=caller.actor, task_id=task_id, review=body)
    task = await _send(res, row, ReviewWorkflow.submit, request, "submit")
    return review.answered(row, task, with_reviewer=caller.is_admin)


@dataclass(frozen=True)
class Schedule:
    """A task's dates: answer by `respond_by`; the review is due `review_period` after
    accepting, by `review_by` once accepted."""

    respond_by: datetime
    review_by: datetime | None
    review_period: timedelta


async def schedule(res: Resources, caller: Caller, task_id: str) -> Schedule:
    """The task's schedule (its reviewer and admins; anyone else's task is NotFound)."""
    require(caller, Role.reviewer, Role.admin)
    row = await _own_task(res, caller, task_id)
    period = review.task_params(row).review_deadline
    return Schedule(respond_by=row["accept_by"], review_by=row["due_by"], review_period=period)


async def closed(res: Resources, caller: Caller, limit: int = 50) -> list[ClosedTask]:
    """The reviewer's tasks that ended (reviewed, declined, expired, cancelled or reassigned),
    the latest first, each with its reason: a task taken away shows as such rather than
    vanishing. Reviewers only."""
    require(caller, Role.reviewer)
    return await review.closed(res.pool, uuid.UUID(caller.actor.user_id), limit)


MAX_DRAFT_CHARS = 100_000


async def draft(res: Resources, caller: Caller, task_id: str) -> ReviewDraft:
    """The review the reviewer is writing, as last saved (empty if none). Its reviewer only."""
    require(caller, Role.reviewer)
    row = await _own_task(res, caller, task_id)
    return await review.review_draft(res.pool, row["id"], uuid.UUID(caller.actor.user_id))


async def save_draft(
    res: Resources, caller: Caller, task_id: str, content: dict[str, Any]
) -> ReviewDraft:
    """Keep what the rubric form holds, valid or not (its reviewer, while the task is open).
    Conflict once the task has ended; Invalid when it is too big to be a form."""
    require(caller, Role.reviewer)
    row = await _own_task(res, caller, task_id)
    if row["status"] not in ("offered", "accepted"):
        raise Conflict("the task is no longer open; its review cannot be changed")
    if len(str(content)) > MAX_DRAFT_CHARS:
        raise Invalid("the draft is too long")
    reviewer_id = uuid.UUID(caller.actor.user_id)
    await review.save_review_draft(res.pool, row["id"], reviewer_id, content)
    return await review.review_draft(res.pool, row["id"], reviewer_id)


# --- what admins see -------------------------------------------------------------------------


async def flagged(
    res: Resources, caller: Caller, *, cursor: str | None = None, limit: int = 50
) -> FlaggedPage:
    """Applications waiting for an admin (for example: no eligible expert left), the longest
    waiting first, with the reason (admins). Adding a reviewer clears the flag."""
    require(caller, Role.admin)
    items, next_cursor = await _paged(review.flagged(res.pool, cursor=cursor, limit=limit))
    return FlaggedPage(items=items, next_cursor=next_cursor)


async def overdue(
    res: Resources, caller: Caller, *, cursor: str | None = None, limit: int = 50
) -> InboxPage:
    """Open review tasks past their deadline, the longest overdue first, with the reviewer
    (admins)."""
    require(caller, Role.admin)
    items, next_cursor = await _paged(review.overdue(res.pool, cursor=cursor, limit=limit))
    return InboxPage(items=items, next_cursor=next_cursor)


async def of_application(res: Resources, caller: Caller, application_id: str) -> ApplicationReviews:
    """Every review task of the application (who, status, deadline), every review with its
    author, and the flag waiting for an admin, if any (admins)."""
    require(caller, Role.admin)
    app_id = parse_id(application_id, APPLICATION_NOT_FOUND)
    found = await application.flag(res.pool, app_id)
    if found is None:
        raise NotFound(APPLICATION_NOT_FOUND)
    return ApplicationReviews(
        application_id=str(app_id),
        tasks=await review.application_tasks(res.pool, app_id),
        reviews=[r for _, r in await review.reviews(res.pool, app_id)],
        flag_reason=found[0],
    )


# --- admins' interventions -------------------------------------------------------------------


async def add_reviewer(
    res: Resources, caller: Caller, application_id: str, body: ReviewerAdd
) -> InboxItem:
    """Offer the application to a reviewer the admin chooses, with a reason; it clears a flag
    (admins). A reviewer from the applicant's or a partner's institution, or one already
    offered this application, is refused (Conflict)."""
    require(caller, Role.admin)
    app_id = parse_id(application_id, APPLICATION_NOT_FOUND)
    if await application.flag(res.pool, app_id) is None:
        raise NotFound(APPLICATION_NOT_FOUND)
    handle = res.client.get_workflow_handle_for(ReviewWorkflow.run, ids.review(app_id))
    task = await send(
        res,
        handle,
        ReviewWorkflow.add_reviewer,
        AddReviewerRequest(actor=caller.actor, reviewer_id=body.reviewer_id, reason=body.reason),
    )
    row = await review.task(res.pool, uuid.UUID(task.task_id))
    assert row is not None  # the update returns once the task is on record
    return inbox_item(row, with_reviewer=True)


async def move_deadline(
    res: Resources,
    caller: Caller,
    task_id: str,
    body: DeadlineExtension,
    *,
    application_id: str | None = None,
) -> InboxItem:
    """Move an open task's current deadline (to accept, or to submit) later, with a reason
    (admins). The reviewer is notified and reminded again before the new deadline. With
    `application_id`, a task of another application is NotFound."""
    require(caller, Role.admin)
    row = await _own_task(res, caller, task_id)
    if application_id is not None and str(row["application_id"]) != application_id:
        raise NotFound("no such task on this application")
    request = ExtendRequest(
        actor=caller.actor, task_id=task_id, until=body.until, reason=body.reason
    )
    await _send(res, row, ReviewWorkflow.extend_deadline, request)
    return inbox_item(await _own_task(res, caller, task_id), with_reviewer=True)


async def reassign(
    res: Resources, caller: Caller, task_id: str, body: ReassignCreate
) -> ApplicationReviews:
    """Take an open review task away from its reviewer, with a reason (admins): to the
    reviewer named (checked for conflicts of interest, else Conflict), or to the next eligible
    expert. The reviewer is told; the answer is the application's tasks and reviews."""
    require(caller, Role.admin)
    row = await _own_task(res, caller, task_id)
    request = ReassignRequest(
        actor=caller.actor, reason=body.reason, task_id=task_id, reviewer_id=body.reviewer_id
    )
    await _send(res, row, ReviewWorkflow.reassign, request)
    return await of_application(res, caller, str(row["application_id"]))
