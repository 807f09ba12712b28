"""Reporting: the applicant's progress, financial and final reports, their review by the
assigned expert or an admin, and the lists of reports waiting or overdue.

Every change is an Update of the application's agreement workflow, which releases a held
tranche once the reports due before it are accepted; lists come from PostgreSQL."""

from __future__ import annotations

import uuid

from grantflow.services import agreement as agreement_service
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.updates import send
from grantflow.store import agreement
from schemas.agreement import (
    AgreementState,
    OverdueReport,
    Report,
    ReportCreate,
    ReportDecision,
    ReportReview,
    ReportReviewerAssignment,
    ReportReviewerCreate,
    ReportSubmission,
    ReportToReview,
)
from schemas.common import Role
from workflows.agreement import AgreementWorkflow

NOT_YOURS = "no reports of yours to review here"


async def submit(
    res: Resources, caller: Caller, application_id: uuid.UUID, seq: int, body: ReportCreate
) -> Report:
    """Send report `seq`, progress, financial or final (again, if it was returned), as the
    application's applicant. Conflict when that report is not due or already in."""
    await agreement_service.own(res, caller, application_id)
    return await send(
        res,
        agreement_service.handle(res, application_id),
        AgreementWorkflow.submit_report,
        ReportSubmission(actor=caller.actor, seq=seq, body=body.body),
    )


async def decide(
    res: Resources, caller: Caller, application_id: uuid.UUID, seq: int, body: ReportDecision
) -> Report:
    """Accept a submitted report (a tranche held back for it is paid at once) or return it
    with a comment; accepting the final report closes the project with the outcome given.
    Admins decide on any project's reports, an expert only on those it was assigned (any
    other is NotFound). Conflict when the report is not submitted."""
    require(caller, Role.admin, Role.reviewer)
    if caller.is_admin:
        await agreement_service.existing(res, application_id)
    elif caller.actor.user_id != await agreement.report_reviewer(res.pool, application_id):
        raise NotFound(NOT_YOURS)
    return await send(
        res,
        agreement_service.handle(res, application_id),
        AgreementWorkflow.review_report,
        ReportReview(actor=caller.actor, seq=seq, **body.model_dump()),
    )


async def assign_reviewer(
    res: Resources, caller: Caller, application_id: uuid.UUID, body: ReportReviewerCreate
) -> AgreementState:
    """Assign an expert to decide on the project's reports, replacing any earlier one, with
    the reason on record (admins): the expert named, or else the least loaded expert of the
    application's specialty. Conflict for an expert from the applicant's institution or its
    partners, or when no expert is eligible."""
    require(caller, Role.admin)
    await agreement_service.existing(res, application_id)
    return await send(
        res,
        agreement_service.handle(res, application_id),
        AgreementWorkflow.assign_report_reviewer,
        ReportReviewerAssignment(actor=caller.actor, **body.model_dump()),
    )


async def to_review(res: Resources, caller: Caller, limit: int = 50) -> list[ReportToReview]:
    """The submitted reports waiting for the calling expert, oldest deadline first (each
    leaves the list once decided). Experts only."""
    require(caller, Role.reviewer)
    return await agreement.reports_to_review(res.pool, uuid.UUID(caller.actor.user_id), limit)


async def submitted(res: Resources, caller: Caller, limit: int = 200) -> list[ReportToReview]:
    """Every project's submitted reports waiting for a decision, oldest deadline first
    (admins, who may decide any of them)."""
    require(caller, Role.admin)
    return await agreement.submitted_reports(res.pool, limit)


async def overdue(
    res: Resources, caller: Caller, programme_id: uuid.UUID | None = None, limit: int = 200
) -> list[OverdueReport]:
    """Reports past their deadline and not in, oldest deadline first, of one programme or
    all. Admins only."""
    require(caller, Role.admin)
    return await agreement.overdue_reports(res.pool, programme_id, limit)
