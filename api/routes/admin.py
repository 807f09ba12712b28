"""What admins need to keep reviews moving: the flagged queue, overdue tasks, every task and
review of an application, adding a reviewer and extending a deadline.

Interventions are Updates of the review workflow with a required reason, recorded in the audit
trail with the admin's name: nothing an admin does bypasses the workflow."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import Admin, DbConn, Res
from api.routes.reviews import REFUSALS, own_task, review_workflow_id, send_update
from schemas.common import ApiError
from schemas.reviews import (
    AddReviewerRequest,
    ApplicationReviews,
    DeadlineExtension,
    ExtendRequest,
    FlaggedPage,
    InboxItem,
    InboxPage,
    ReviewerAdd,
)
from store import applications, reviews
from store.reviews import inbox_item
from workflows.review import ReviewWorkflow

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _page_error(exc: ValueError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


@router.get("/applications/flagged", response_model=FlaggedPage)
async def flagged(
    _: Admin,
    db: DbConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FlaggedPage:
    """Applications waiting for an admin (for example: no eligible expert left), the longest
    waiting first, with the reason. Adding a reviewer clears the flag."""
    try:
        items, next_cursor = await reviews.flagged(db, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise _page_error(exc) from None
    return FlaggedPage(items=items, next_cursor=next_cursor)


@router.get("/reviews/overdue", response_model=InboxPage)
async def overdue(
    _: Admin,
    db: DbConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    """Open review tasks past their deadline, the longest overdue first, with the reviewer."""
    try:
        items, next_cursor = await reviews.overdue(db, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise _page_error(exc) from None
    return InboxPage(items=items, next_cursor=next_cursor)


@router.get(
    "/applications/{application_id}/reviews",
    response_model=ApplicationReviews,
    responses={404: {"model": ApiError}},
)
async def application_reviews(
    application_id: uuid.UUID, _: Admin, db: DbConn
) -> ApplicationReviews:
    """Every review task of the application (who, status, deadline) and every review with
    its author."""
    found = await applications.flag(db, application_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "application not found")
    return ApplicationReviews(
        application_id=str(application_id),
        tasks=await reviews.application_tasks(db, application_id),
        reviews=[r for _, r in await reviews.reviews(db, application_id)],
        flag_reason=found[0],
    )


@router.post(
    "/applications/{application_id}/reviewers",
    response_model=InboxItem,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def add_reviewer(
    application_id: uuid.UUID, body: ReviewerAdd, caller: Admin, db: DbConn, res: Res
) -> InboxItem:
    """Offer the application to a reviewer you choose, with a reason (it clears a flag). A
    reviewer from the applicant's or a partner's institution, or one already offered this
    application, is refused."""
    if await applications.flag(db, application_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "application not found")
    handle = res.client.get_workflow_handle(review_workflow_id(str(application_id)))
    task = await handle.execute_update(
        ReviewWorkflow.add_reviewer,
        AddReviewerRequest(actor=caller.actor, reviewer_id=body.reviewer_id, reason=body.reason),
    )
    row = await reviews.task(db, uuid.UUID(task.task_id))
    assert row is not None  # the update returns once the task is on record
    return inbox_item(row, with_reviewer=True)


@router.post("/reviews/{task_id}/deadline", response_model=InboxItem, responses=REFUSALS)
async def extend_deadline(
    task_id: str, body: DeadlineExtension, caller: Admin, db: DbConn, res: Res
) -> InboxItem:
    """Move an open task's current deadline (to accept, or to submit) later, with a reason.
    The reviewer is notified and reminded again before the new deadline."""
    row = await own_task(db, caller, task_id)
    await send_update(
        res,
        str(row["application_id"]),
        ReviewWorkflow.extend_deadline,
        ExtendRequest(actor=caller.actor, task_id=task_id, until=body.until, reason=body.reason),
    )
    return inbox_item(await own_task(db, caller, task_id), with_reviewer=True)
