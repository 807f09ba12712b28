"""After an approval: the agreement, its acceptance, its tranches, and the progress reports
that release them. Every action is an Update of the application's agreement workflow."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from grantflow.api.deps import Admin, Applicant, Caller, CurrentCaller, DbConn, Res, require
from grantflow.services import application as application_service
from grantflow.store import agreement
from schemas.agreement import (
    AgreementAction,
    AgreementDecline,
    AgreementState,
    Report,
    ReportCreate,
    ReportDecision,
    ReportReview,
    ReportReviewerAssignment,
    ReportReviewerCreate,
    ReportSubmission,
    ReportToReview,
)
from schemas.common import ApiError, Role
from workflows import ids
from workflows.agreement import AgreementWorkflow

router = APIRouter(tags=["agreements"])
Expert = Annotated[Caller, Depends(require(Role.reviewer))]
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such application or agreement, or not yours."},
    409: {"model": ApiError, "description": "Not possible now: the reason says why."},
}


def _handle(res: Res, application_id: uuid.UUID) -> Any:
    return res.client.get_workflow_handle(ids.agreement(application_id))


async def _agreement(db: DbConn, application_id: uuid.UUID) -> AgreementState:
    found = await agreement.get(db, application_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this application has no agreement")
    return found


@router.get(
    "/v1/applications/{application_id}/agreement",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def get_agreement(
    application_id: uuid.UUID, caller: CurrentCaller, db: DbConn, res: Res
) -> AgreementState:
    """The agreement of an approved application: amount, status, the deadline to accept,
    tranches (paid, scheduled, or held back and why), reports (progress, financial, final)
    and the expert assigned to review them. The applicant, admins and that expert may read
    it."""
    if caller.actor.user_id != await agreement.report_reviewer(db, application_id):
        await application_service.get(res, caller, str(application_id))
    return await _agreement(db, application_id)


@router.post(
    "/v1/applications/{application_id}/agreement/acceptance",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def accept(
    application_id: uuid.UUID, caller: Applicant, db: DbConn, res: Res
) -> AgreementState:
    """Accept the agreement before its deadline: the first tranche is paid at once."""
    await application_service.get(res, caller, str(application_id))
    await _agreement(db, application_id)
    state: AgreementState = await _handle(res, application_id).execute_update(
        AgreementWorkflow.accept, AgreementAction(actor=caller.actor)
    )
    return state


@router.post(
    "/v1/applications/{application_id}/agreement/decline",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def decline(
    application_id: uuid.UUID, body: AgreementDecline, caller: Applicant, db: DbConn, res: Res
) -> AgreementState:
    """Decline the agreement: the approved amount returns to the programme's budget."""
    await application_service.get(res, caller, str(application_id))
    await _agreement(db, application_id)
    state: AgreementState = await _handle(res, application_id).execute_update(
        AgreementWorkflow.decline, AgreementAction(actor=caller.actor, reason=body.reason)
    )
    return state


@router.post(
    "/v1/applications/{application_id}/reports/{seq}",
    response_model=Report,
    responses=REFUSALS,
)
async def submit_report(
    application_id: uuid.UUID,
    seq: int,
    body: ReportCreate,
    caller: Applicant,
    db: DbConn,
    res: Res,
) -> Report:
    """Send report `seq`, progress, financial or final (again, if it was returned). Each later
    tranche is paid only once every report due before it is accepted."""
    await application_service.get(res, caller, str(application_id))
    await _agreement(db, application_id)
    report: Report = await _handle(res, application_id).execute_update(
        AgreementWorkflow.submit_report,
        ReportSubmission(actor=caller.actor, seq=seq, body=body.body),
    )
    return report


@router.post(
    "/v1/admin/applications/{application_id}/reports/{seq}/decision",
    response_model=Report,
    responses=REFUSALS,
)
async def review_report(
    application_id: uuid.UUID,
    seq: int,
    body: ReportDecision,
    caller: Admin,
    db: DbConn,
    res: Res,
) -> Report:
    """Accept a submitted report (a tranche held back for it is paid at once) or return it
    to the applicant with a comment."""
    await _agreement(db, application_id)
    report: Report = await _handle(res, application_id).execute_update(
        AgreementWorkflow.review_report,
        ReportReview(actor=caller.actor, seq=seq, **body.model_dump()),
    )
    return report


@router.post(
    "/v1/admin/applications/{application_id}/reports/reviewer",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def assign_report_reviewer(
    application_id: uuid.UUID, body: ReportReviewerCreate, caller: Admin, db: DbConn, res: Res
) -> AgreementState:
    """Assign an expert to accept or return the project's reports (replacing any earlier one),
    with the reason on record: the expert named by `reviewer_id`, or else the least loaded
    expert of the application's specialty. Experts from the applicant's institution or its
    partners are refused (409), as in the review stage. Admins can still review reports."""
    await _agreement(db, application_id)
    state: AgreementState = await _handle(res, application_id).execute_update(
        AgreementWorkflow.assign_report_reviewer,
        ReportReviewerAssignment(actor=caller.actor, **body.model_dump()),
    )
    return state


@router.get("/v1/report-reviews", response_model=list[ReportToReview])
async def reports_to_review(
    caller: Expert, db: DbConn, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ReportToReview]:
    """The submitted reports waiting for this expert, oldest deadline first, at most `limit`
    (each leaves the list once decided)."""
    return await agreement.reports_to_review(db, uuid.UUID(caller.actor.user_id), limit)


@router.post(
    "/v1/applications/{application_id}/reports/{seq}/decision",
    response_model=Report,
    responses=REFUSALS,
)
async def expert_review_report(
    application_id: uuid.UUID,
    seq: int,
    body: ReportDecision,
    caller: Expert,
    db: DbConn,
    res: Res,
) -> Report:
    """The assigned expert accepts a submitted report (a tranche held back for it is paid at
    once) or returns it with a comment; accepting the final report closes the project with
    the outcome given. Another expert gets a 404."""
    if caller.actor.user_id != await agreement.report_reviewer(db, application_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no reports of yours to review here")
    report: Report = await _handle(res, application_id).execute_update(
        AgreementWorkflow.review_report,
        ReportReview(actor=caller.actor, seq=seq, **body.model_dump()),
    )
    return report
