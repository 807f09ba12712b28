"""After an approval: the agreement, its acceptance, its tranches, and the progress reports
that release them. Every action is an Update of the application's agreement workflow."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from grantflow.api.deps import Admin, Applicant, Caller, CurrentCaller, Res, require
from grantflow.services import agreement, reporting
from schemas.agreement import (
    AgreementDecline,
    AgreementState,
    Report,
    ReportCreate,
    ReportDecision,
    ReportReviewerCreate,
    ReportToReview,
)
from schemas.common import ApiError, Role

router = APIRouter(tags=["agreements"])
Expert = Annotated[Caller, Depends(require(Role.reviewer))]
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such application or agreement, or not yours."},
    409: {"model": ApiError, "description": "Not possible now: the reason says why."},
}


@router.get(
    "/v1/applications/{application_id}/agreement",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def get_agreement(
    application_id: uuid.UUID, caller: CurrentCaller, res: Res
) -> AgreementState:
    """The agreement of an approved application: amount, status, the deadline to accept,
    tranches (paid, scheduled, or held back and why), reports (progress, financial, final)
    and the expert assigned to review them. The applicant, admins and that expert may read
    it."""
    return await agreement.get(res, caller, application_id)


@router.post(
    "/v1/applications/{application_id}/agreement/acceptance",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def accept(application_id: uuid.UUID, caller: Applicant, res: Res) -> AgreementState:
    """Accept the agreement before its deadline: the first tranche is paid at once."""
    return await agreement.accept(res, caller, application_id)


@router.post(
    "/v1/applications/{application_id}/agreement/decline",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def decline(
    application_id: uuid.UUID, body: AgreementDecline, caller: Applicant, res: Res
) -> AgreementState:
    """Decline the agreement: the approved amount returns to the programme's budget."""
    return await agreement.decline(res, caller, application_id, body.reason)


@router.post(
    "/v1/applications/{application_id}/reports/{seq}",
    response_model=Report,
    responses=REFUSALS,
)
async def submit_report(
    application_id: uuid.UUID, seq: int, body: ReportCreate, caller: Applicant, res: Res
) -> Report:
    """Send report `seq`, progress, financial or final (again, if it was returned). Each later
    tranche is paid only once every report due before it is accepted."""
    return await reporting.submit(res, caller, application_id, seq, body)


@router.post(
    "/v1/admin/applications/{application_id}/reports/{seq}/decision",
    response_model=Report,
    responses=REFUSALS,
)
async def review_report(
    application_id: uuid.UUID, seq: int, body: ReportDecision, caller: Admin, res: Res
) -> Report:
    """Accept a submitted report (a tranche held back for it is paid at once) or return it
    to the applicant with a comment."""
    return await reporting.decide(res, caller, application_id, seq, body)


@router.post(
    "/v1/admin/applications/{application_id}/reports/reviewer",
    response_model=AgreementState,
    responses=REFUSALS,
)
async def assign_report_reviewer(
    application_id: uuid.UUID, body: ReportReviewerCreate, caller: Admin, res: Res
) -> AgreementState:
    """Assign an expert to accept or return the project's reports (replacing any earlier one),
    with the reason on record: the expert named by `reviewer_id`, or else the least loaded
    expert of the application's specialty. Experts from the applicant's institution or its
    partners are refused (409), as in the review stage. Admins can still review reports."""
    return await reporting.assign_reviewer(res, caller, application_id, body)


@router.get("/v1/report-reviews", response_model=list[ReportToReview])
async def reports_to_review(
    caller: Expert, res: Res, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ReportToReview]:
    """The submitted reports waiting for this expert, oldest deadline first, at most `limit`
    (each leaves the list once decided)."""
    return await reporting.to_review(res, caller, limit)


@router.post(
    "/v1/applications/{application_id}/reports/{seq}/decision",
    response_model=Report,
    responses=REFUSALS,
)
async def expert_review_report(
    application_id: uuid.UUID, seq: int, body: ReportDecision, caller: Expert, res: Res
) -> Report:
    """The assigned expert accepts a submitted report (a tranche held back for it is paid at
    once) or returns it with a comment; accepting the final report closes the project with
    the outcome given. Another expert gets a 404."""
    return await reporting.decide(res, caller, application_id, seq, body)
