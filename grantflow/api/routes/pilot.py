"""Pilot testing and the project's close: the plan, the clinics' sites, the evaluation, the
decision, overdue reports and the programme's outcome. Every action is an Update of the
application's, pilot's or site's workflow; reads come from Postgres."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from grantflow.api.deps import Admin, ApplicantOrAdmin, Caller, CurrentCaller, Res, require
from grantflow.services import pilot, reporting, site
from schemas.agreement import OverdueReport
from schemas.application import ApplicationStatus
from schemas.common import ApiError, InvalidInput, Role
from schemas.pilot import (
    EvaluationCreate,
    PilotDecisionCreate,
    PilotPlanCreate,
    PilotState,
    PilotSummary,
    SiteDecline,
    SiteProposalCreate,
    SiteReportCreate,
    SiteState,
)

router = APIRouter(tags=["pilots"])
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such application, pilot or site, or not yours."},
    409: {"model": ApiError, "description": "Not possible now: the reason says why."},
    422: {
        "model": InvalidInput,
        "description": "Invalid input, or a plan naming an unknown clinic.",
    },
}
Coordinator = Annotated[Caller, Depends(require(Role.coordinator))]
Expert = Annotated[Caller, Depends(require(Role.reviewer))]


@router.post(
    "/v1/applications/{application_id}/pilot",
    response_model=ApplicationStatus,
    responses=REFUSALS,
)
async def plan_pilot(
    application_id: uuid.UUID, body: PilotPlanCreate, caller: ApplicantOrAdmin, res: Res
) -> ApplicationStatus:
    """Plan the pilot once the agreement is accepted: the clinics (sites), each with its start,
    duration and the metrics it will report with their targets. Each clinic's coordinators
    are asked to accept."""
    return await pilot.plan(res, caller, application_id, body)


@router.get(
    "/v1/applications/{application_id}/pilot", response_model=PilotState, responses=REFUSALS
)
async def get_pilot(application_id: uuid.UUID, caller: CurrentCaller, res: Res) -> PilotState:
    """The pilot: its sites (status, period, deadline, targets and results), the evaluation and
    the decision. The applicant, admins and the pilot's evaluator may read it."""
    return await pilot.get(res, caller, application_id)


# --- clinic coordinators ------------------------------------------------------------------------


@router.get("/v1/clinic/sites", response_model=list[SiteState])
async def clinic_sites(
    caller: Coordinator, res: Res, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[SiteState]:
    """The pilot sites at the coordinator's clinic, newest first; no other clinic's."""
    return await site.clinic_sites(res, caller, limit)


@router.post("/v1/sites/{site_id}/acceptance", response_model=SiteState, responses=REFUSALS)
async def accept_site(site_id: str, caller: Coordinator, res: Res) -> SiteState:
    """The clinic accepts the pilot: it starts at the planned date."""
    return await site.accept(res, caller, site_id)


@router.post("/v1/sites/{site_id}/decline", response_model=SiteState, responses=REFUSALS)
async def decline_site(site_id: str, body: SiteDecline, caller: Coordinator, res: Res) -> SiteState:
    """The clinic declines, with a reason; an admin proposes another clinic."""
    return await site.decline(res, caller, site_id, body.reason)


@router.post("/v1/sites/{site_id}/report", response_model=SiteState, responses=REFUSALS)
async def report_site(
    site_id: str, body: SiteReportCreate, caller: Coordinator, res: Res
) -> SiteState:
    """The site's report once its period is over: every planned metric's measured value."""
    return await site.report(res, caller, site_id, body)


# --- the evaluator ------------------------------------------------------------------------------


@router.get("/v1/evaluations", response_model=list[str])
async def my_evaluations(
    caller: Expert, res: Res, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[str]:
    """The applications whose pilot waits for this expert's evaluation, longest waiting first,
    at most `limit` (each leaves the list once evaluated)."""
    return await pilot.evaluations(res, caller, limit)


@router.post(
    "/v1/applications/{application_id}/pilot/evaluation",
    response_model=PilotState,
    responses=REFUSALS,
)
async def evaluate(
    application_id: uuid.UUID, body: EvaluationCreate, caller: Expert, res: Res
) -> PilotState:
    """The evaluator's recommendation (implement, extend or stop) with comments; the
    results against the targets are attached by the pilot. Another expert gets a 404."""
    return await pilot.evaluate(res, caller, application_id, body)


# --- admins -------------------------------------------------------------------------------------


@router.post(
    "/v1/admin/applications/{application_id}/pilot/sites",
    response_model=PilotState,
    responses=REFUSALS,
)
async def propose_site(
    application_id: uuid.UUID, body: SiteProposalCreate, caller: Admin, res: Res
) -> PilotState:
    """Replace a declined site with another clinic."""
    return await pilot.propose_site(res, caller, application_id, body)


@router.post(
    "/v1/admin/applications/{application_id}/pilot/evaluator",
    response_model=PilotState,
    responses=REFUSALS,
)
async def assign_evaluator(
    application_id: uuid.UUID, evaluator_id: Annotated[str, Query()], caller: Admin, res: Res
) -> PilotState:
    """Name the evaluator by hand when no eligible expert was found (the same rules apply)."""
    return await pilot.assign_evaluator(res, caller, application_id, evaluator_id)


@router.post(
    "/v1/admin/applications/{application_id}/pilot/decision",
    response_model=PilotState,
    responses=REFUSALS,
)
async def decide(
    application_id: uuid.UUID, body: PilotDecisionCreate, caller: Admin, res: Res
) -> PilotState:
    """Decide on the evaluated pilot: implement (reporting goes on to the final report),
    extend (a further period at the sites named, then a new evaluation) or stop (unpaid
    tranches are cancelled and the money returns to the budget)."""
    return await pilot.decide(res, caller, application_id, body)


@router.get("/v1/admin/reports/overdue", response_model=list[OverdueReport])
async def overdue_reports(
    caller: Admin,
    res: Res,
    programme_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[OverdueReport]:
    """Reports past their deadline and not in, oldest deadline first."""
    return await reporting.overdue(res, caller, programme_id, limit)


@router.get(
    "/v1/programmes/{programme_id}/outcomes", response_model=PilotSummary, responses=REFUSALS
)
async def outcomes(programme_id: uuid.UUID, caller: Admin, res: Res) -> PilotSummary:
    """Projects, closed and implemented (and the share implemented), pilot sites by clinic
    and status, overdue reports."""
    return await pilot.outcomes(res, caller, programme_id)
