"""The reviewer's path: the inbox, a task with its application, accept or decline, review.

Every action is an Update of the application's review workflow; its validator refuses what
is not possible (not your task, not accepted yet, already submitted, bad scores) before it
enters the history, and the refusal comes back as 409 (or 422 for a review's content)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from grantflow.api.deps import Caller, Res, require
from grantflow.services import review
from schemas.common import ApiError, InvalidInput, Role
from schemas.review import DeclineCreate, InboxItem, InboxPage, ReviewCreate, TaskDetail

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])
Reviewer = Annotated[Caller, Depends(require(Role.reviewer))]
ReviewerOrAdmin = Annotated[Caller, Depends(require(Role.reviewer, Role.admin))]
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such task, or not yours."},
    409: {"model": ApiError, "description": "Not possible now: the reason says why."},
}


@router.get("", response_model=InboxPage)
async def inbox(
    caller: Reviewer,
    res: Res,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    """Your open review tasks, soonest deadline first: what is expected (`expected`) and by
    when (`deadline`). Pass `next_cursor` as `cursor` for the next page."""
    return await review.inbox(res, caller, cursor=cursor, limit=limit)


@router.get("/{task_id}", response_model=TaskDetail, responses=REFUSALS)
async def task_detail(task_id: str, caller: ReviewerOrAdmin, res: Res) -> TaskDetail:
    """The task, the application to review, the programme's rubric and score range, your
    review once submitted, and the other reviews only after yours is in (blind review)."""
    return await review.get(res, caller, task_id)


@router.post("/{task_id}/acceptance", response_model=InboxItem, responses=REFUSALS)
async def accept(task_id: str, caller: Reviewer, res: Res) -> InboxItem:
    """Accept the task: the review deadline starts now and shows as the task's `deadline`."""
    return await review.accept(res, caller, task_id)


@router.post("/{task_id}/decline", response_model=InboxItem, responses=REFUSALS)
async def decline(task_id: str, body: DeclineCreate, caller: Reviewer, res: Res) -> InboxItem:
    """Decline the task with a reason (also after accepting, e.g. on finding a conflict of
    interest). The application goes to the next eligible expert at once."""
    return await review.decline(res, caller, task_id, body)


@router.post(
    "/{task_id}/review",
    response_model=InboxItem,
    responses={
        **REFUSALS,
        422: {"model": InvalidInput, "description": "A score is missing, unknown or out of range."},
    },
)
async def submit_review(task_id: str, body: ReviewCreate, caller: Reviewer, res: Res) -> InboxItem:
    """Submit your review of an accepted task: an integer score for every criterion of the
    programme's rubric (see `GET /v1/reviews/{task_id}`), a recommendation and comments. One
    review per task; it cannot be changed afterwards."""
    return await review.submit(res, caller, task_id, body)
