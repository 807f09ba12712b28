"""The reviewer's path: the inbox, a task with its application, accept or decline, review.

Every action is an Update of the application's review workflow; its validator refuses what
is not possible (not your task, not accepted yet, already submitted, bad scores) before it
enters the history, and the refusal comes back as 409 (or 422 for a review's content)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, status
from temporalio.client import WorkflowUpdateFailedError

from grantflow.api.deps import Caller, DbConn, Res, require
from grantflow.services.errors import refused_update
from grantflow.store import application, review
from grantflow.store.review import inbox_item
from schemas.common import ApiError, InvalidInput, Role
from schemas.review import (
    DeclineCreate,
    DeclineRequest,
    InboxItem,
    InboxPage,
    ReviewCreate,
    SubmitRequest,
    Task,
    TaskAction,
    TaskDetail,
)
from workflows import ids
from workflows.review import UNKNOWN_TASK, ReviewWorkflow, review_problems

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])
Reviewer = Annotated[Caller, Depends(require(Role.reviewer))]
ReviewerOrAdmin = Annotated[Caller, Depends(require(Role.reviewer, Role.admin))]
NOT_FOUND = "review task not found"
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such task, or not yours."},
    409: {"model": ApiError, "description": "Not possible now: the reason says why."},
}


async def own_task(db: DbConn, caller: Caller, task_id: str) -> asyncpg.Record:
    """The task if the caller may act on it; anyone else's is a 404 (ids reveal nothing)."""
    try:
        row = await review.task(db, uuid.UUID(task_id))
    except ValueError:
        row = None
    if row is None or not (caller.is_admin or str(row["reviewer_id"]) == caller.actor.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return row


async def send_update(res: Res, application_id: str, update: Any, arg: Any) -> Task:
    """Send a reviewer's Update; returns the task as the workflow answered. A task is on
    record a moment before its workflow has taken the offer in; an Update in that moment is
    retried briefly instead of refused."""
    handle = res.client.get_workflow_handle(ids.review(application_id))
    for attempt in range(20):
        try:
            task: Task = await handle.execute_update(update, arg)
            return task
        except WorkflowUpdateFailedError as exc:
            if refused_update(exc) != UNKNOWN_TASK or attempt == 19:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable: the last attempt raises")


@router.get("", response_model=InboxPage)
async def inbox(
    caller: Reviewer,
    db: DbConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    """Your open review tasks, soonest deadline first: what is expected (`expected`) and by
    when (`deadline`). Pass `next_cursor` as `cursor` for the next page."""
    try:
        items, next_cursor = await review.inbox(
            db, uuid.UUID(caller.actor.user_id), cursor=cursor, limit=limit
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return InboxPage(items=items, next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskDetail, responses=REFUSALS)
async def task_detail(task_id: str, caller: ReviewerOrAdmin, db: DbConn) -> TaskDetail:
    """The task, the application to review, the programme's rubric and score range, your
    review once submitted, and the other reviews only after yours is in (blind review)."""
    row = await own_task(db, caller, task_id)
    params = review.task_params(row)
    found = await application.get(db, row["application_id"])
    assert found is not None
    all_reviews = await review.reviews(db, row["application_id"])
    mine = next((r for reviewer, r in all_reviews if reviewer == str(row["reviewer_id"])), None)
    others = None
    if mine is not None or caller.is_admin:
        others = [r for reviewer, r in all_reviews if reviewer != str(row["reviewer_id"])]
    return TaskDetail(
        task=inbox_item(row, with_reviewer=caller.is_admin),
        application=found.content.model_dump(mode="json"),
        rubric=params.rubric,
        score_range=[params.score_min, params.score_max],
        my_review=mine,
        other_reviews=others,
    )


@router.post("/{task_id}/acceptance", response_model=InboxItem, responses=REFUSALS)
async def accept(task_id: str, caller: Reviewer, db: DbConn, res: Res) -> InboxItem:
    """Accept the task: the review deadline starts now and shows as the task's `deadline`."""
    row = await own_task(db, caller, task_id)
    task = await send_update(
        res,
        str(row["application_id"]),
        ReviewWorkflow.accept,
        TaskAction(actor=caller.actor, task_id=task_id),
    )
    return review.answered(row, task, with_reviewer=caller.is_admin)


@router.post("/{task_id}/decline", response_model=InboxItem, responses=REFUSALS)
async def decline(
    task_id: str, body: DeclineCreate, caller: Reviewer, db: DbConn, res: Res
) -> InboxItem:
    """Decline the task with a reason (also after accepting, e.g. on finding a conflict of
    interest). The application goes to the next eligible expert at once."""
    row = await own_task(db, caller, task_id)
    task = await send_update(
        res,
        str(row["application_id"]),
        ReviewWorkflow.decline,
        DeclineRequest(
            actor=caller.actor,
            task_id=task_id,
            reason=body.reason,
            conflict_of_interest=body.conflict_of_interest,
        ),
    )
    return review.answered(row, task, with_reviewer=caller.is_admin)


@router.post(
    "/{task_id}/review",
    response_model=InboxItem,
    responses={
        **REFUSALS,
        422: {"model": InvalidInput, "description": "A score is missing, unknown or out of range."},
    },
)
async def submit_review(
    task_id: str, body: ReviewCreate, caller: Reviewer, db: DbConn, res: Res
) -> InboxItem:
    """Submit your review of an accepted task: an integer score for every criterion of the
    programme's rubric (see `GET /v1/reviews/{task_id}`), a recommendation and comments. One
    review per task; it cannot be changed afterwards."""
    row = await own_task(db, caller, task_id)
    params = review.task_params(row)
    if problems := review_problems(body, params.rubric, params.score_min, params.score_max):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
    task = await send_update(
        res,
        str(row["application_id"]),
        ReviewWorkflow.submit,
        SubmitRequest(actor=caller.actor, task_id=task_id, review=body),
    )
    return review.answered(row, task, with_reviewer=caller.is_admin)
