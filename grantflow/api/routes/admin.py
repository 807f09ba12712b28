"""What admins need to find anything and keep it moving: the filtered application list, the
flagged queue, overdue tasks, every task and review of an application, and the interventions
(add or reassign a reviewer, extend any deadline, re-run screening, cancel).

Interventions are Updates of the application's workflows with a validator and a required
reason, recorded in the audit trail with the admin's name: nothing an admin does bypasses the
workflow. (Withdrawing on the applicant's behalf is `POST /v1/applications/{id}/withdrawal`
with an admin's token.)"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from grantflow.api.deps import Admin, Res
from grantflow.services import admin, application, programme, review
from schemas.admin import AdminApplicationPage, DeadlineMove, InterventionCreate, ReassignCreate
from schemas.application import ApplicationPublic
from schemas.common import ApiError, InvalidInput, Stage
from schemas.programme import CorrectionPublic, ProgrammeCorrectionCreate, ProgrammePublic
from schemas.review import (
    ApplicationReviews,
    DeadlineExtension,
    FlaggedPage,
    InboxItem,
    InboxPage,
    ReviewerAdd,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such task, or not yours."},
    409: {"model": ApiError, "description": "Not possible now: the reason says why."},
}
INTERVENTION: dict[int | str, dict[str, Any]] = {**REFUSALS, 422: {"model": InvalidInput}}


@router.get(
    "/applications", response_model=AdminApplicationPage, responses={422: {"model": InvalidInput}}
)
async def find_applications(
    caller: Admin,
    res: Res,
    programme_id: uuid.UUID | None = None,
    stage: Annotated[list[Stage] | None, Query(description="One or more stages.")] = None,
    institution_id: str | None = None,
    specialty: str | None = None,
    overdue: Annotated[
        bool, Query(description="Only those with a deadline passed (applicant, review, report).")
    ] = False,
    flagged: Annotated[bool, Query(description="Only those waiting for an admin.")] = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AdminApplicationPage:
    """Every application matching all the filters given, newest first, `limit` at a time
    (pass a page's `next_cursor` as `cursor` for the next), with `total` matching and the
    count in each stage (`by_stage`, ignoring the stage filter)."""
    return await admin.page(
        res,
        caller,
        programme_id=programme_id,
        stages=tuple(stage or ()),
        institution_id=institution_id,
        specialty=specialty,
        overdue=overdue,
        flagged=flagged,
        cursor=cursor,
        limit=limit,
    )


@router.get("/applications/flagged", response_model=FlaggedPage)
async def flagged(
    caller: Admin,
    res: Res,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FlaggedPage:
    """Applications waiting for an admin (for example: no eligible expert left), the longest
    waiting first, with the reason. Adding a reviewer clears the flag."""
    return await review.flagged(res, caller, cursor=cursor, limit=limit)


@router.get("/reviews/overdue", response_model=InboxPage)
async def overdue(
    caller: Admin,
    res: Res,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    """Open review tasks past their deadline, the longest overdue first, with the reviewer."""
    return await review.overdue(res, caller, cursor=cursor, limit=limit)


@router.get(
    "/applications/{application_id}/reviews",
    response_model=ApplicationReviews,
    responses={404: {"model": ApiError}},
)
async def application_reviews(
    application_id: uuid.UUID, caller: Admin, res: Res
) -> ApplicationReviews:
    """Every review task of the application (who, status, deadline) and every review with
    its author."""
    return await review.of_application(res, caller, str(application_id))


@router.post(
    "/applications/{application_id}/reviewers",
    response_model=InboxItem,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def add_reviewer(
    application_id: uuid.UUID, body: ReviewerAdd, caller: Admin, res: Res
) -> InboxItem:
    """Offer the application to a reviewer you choose, with a reason (it clears a flag). A
    reviewer from the applicant's or a partner's institution, or one already offered this
    application, is refused."""
    return await review.add_reviewer(res, caller, str(application_id), body)


@router.post("/reviews/{task_id}/deadline", response_model=InboxItem, responses=REFUSALS)
async def extend_deadline(
    task_id: str, body: DeadlineExtension, caller: Admin, res: Res
) -> InboxItem:
    """Move an open task's current deadline (to accept, or to submit) later, with a reason.
    The reviewer is notified and reminded again before the new deadline."""
    return await review.move_deadline(res, caller, task_id, body)


@router.post(
    "/applications/{application_id}/deadlines",
    response_model=ApplicationPublic,
    responses=INTERVENTION,
)
async def move_deadline(
    application_id: uuid.UUID, body: DeadlineMove, caller: Admin, res: Res
) -> ApplicationPublic:
    """Move a deadline of the application later, with a reason: the applicant's revision
    window (`revision`), a review task's (`review`, with `task_id`), the window to accept the
    agreement (`agreement`) or a report's (`report`, with `seq`). Whoever must act is shown the
    new deadline; the audit records it with your name and reason."""
    return await admin.move_deadline(res, caller, str(application_id), body)


@router.post(
    "/reviews/{task_id}/reassignment",
    response_model=ApplicationReviews,
    responses=INTERVENTION,
)
async def reassign(
    task_id: str, body: ReassignCreate, caller: Admin, res: Res
) -> ApplicationReviews:
    """Take an open review task away from its reviewer, with a reason: to the reviewer named
    (checked for conflicts of interest), or to the next eligible expert. The reviewer is told;
    the application's tasks are returned."""
    return await review.reassign(res, caller, task_id, body)


@router.post(
    "/applications/{application_id}/screening",
    response_model=ApplicationPublic,
    responses=INTERVENTION,
)
async def rescreen(
    application_id: uuid.UUID, body: InterventionCreate, caller: Admin, res: Res
) -> ApplicationPublic:
    """Screen an application awaiting revision again, against its programme as it stands now
    (after a correction), with a reason; the response shows the new outcome."""
    return await application.rescreen(res, caller, str(application_id), body.reason)


@router.post(
    "/applications/{application_id}/cancellation",
    response_model=ApplicationPublic,
    responses=INTERVENTION,
)
async def cancel(
    application_id: uuid.UUID, body: InterventionCreate, caller: Admin, res: Res
) -> ApplicationPublic:
    """Cancel a stuck application at any open stage, with a reason: its review, agreement or
    pilot stops, and any money reserved for it is back in the budget when this returns."""
    return await application.cancel(res, caller, str(application_id), body.reason)


@router.post(
    "/programmes/{programme_id}/corrections",
    response_model=ProgrammePublic,
    responses=INTERVENTION,
)
async def correct_programme(
    programme_id: uuid.UUID, body: ProgrammeCorrectionCreate, caller: Admin, res: Res
) -> ProgrammePublic:
    """Correct screening rules entered wrong (maximum grant, admitted organisation types,
    specialties, the complex-project share and annual cap), with a reason; the intake window
    cannot be corrected. Applications submitted from now on are screened by the corrected rules;
    one awaiting revision is screened by them when you re-run its screening
    (`POST /v1/admin/applications/{id}/screening`). An application already `ineligible` has
    ended and stays so. The correction goes through the programme's workflow (a fresh run of it
    once intake has closed) and is on record, with your name, when this returns."""
    return await programme.correct(res, caller, programme_id, body)


@router.get(
    "/programmes/{programme_id}/corrections",
    response_model=list[CorrectionPublic],
    responses={404: {"model": ApiError}},
)
async def programme_corrections(
    programme_id: uuid.UUID, caller: Admin, res: Res
) -> list[CorrectionPublic]:
    """Every correction of the programme, oldest first: who, when, why, and each changed
    field's old and new value."""
    return await programme.corrections(res, caller, programme_id)
