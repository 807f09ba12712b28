"""Pilot testing and the project's close: the plan, the clinics' sites, the evaluation, the
decision, overdue reports and the programme's outcome. Every action is an Update of the
application's, pilot's or site's workflow; reads come from Postgres."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from grantflow.api.deps import Admin, ApplicantOrAdmin, Caller, CurrentCaller, DbConn, Res, require
from grantflow.services import application as application_service
from grantflow.store import agreement, pilot, programme
from schemas.agreement import OverdueReport
from schemas.application import ApplicationStatus
from schemas.common import ApiError, InvalidInput, Role
from schemas.pilot import (
    EvaluationCreate,
    EvaluationSubmission,
    EvaluatorAssignment,
    PilotDecision,
    PilotDecisionCreate,
    PilotPlanCreate,
    PilotPlanRequest,
    PilotState,
    PilotSummary,
    SiteAnswer,
    SiteDecline,
    SiteProposal,
    SiteProposalCreate,
    SiteReport,
    SiteReportCreate,
    SiteState,
)
from workflows import ids
from workflows.application import ApplicationWorkflow
from workflows.pilot import PilotWorkflow
from workflows.site import PilotSiteWorkflow

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


def _pilot(res: Res, application_id: uuid.UUID) -> Any:
    return res.client.get_workflow_handle(ids.pilot(application_id))


async def _clinics_exist(db: DbConn, plan_clinics: list[str]) -> None:
    for clinic in plan_clinics:
        if not await pilot.is_clinic(db, clinic):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"{clinic} is not a known clinic"
            )


@router.post(
    "/v1/applications/{application_id}/pilot",
    response_model=ApplicationStatus,
    responses=REFUSALS,
)
async def plan_pilot(
    application_id: uuid.UUID, body: PilotPlanCreate, caller: ApplicantOrAdmin, db: DbConn, res: Res
) -> ApplicationStatus:
    """Plan the pilot once the agreement is accepted: the clinics (sites), each with its start,
    duration and the metrics it will report with their targets. Each clinic's coordinators
    are asked to accept."""
    await application_service.get(res, caller, str(application_id))
    await _clinics_exist(db, [s.clinic_id for s in body.sites])
    result: ApplicationStatus = await res.client.get_workflow_handle(
        ids.application(str(application_id))
    ).execute_update(
        ApplicationWorkflow.plan_pilot, PilotPlanRequest(actor=caller.actor, plan=body)
    )
    return result


@router.get(
    "/v1/applications/{application_id}/pilot", response_model=PilotState, responses=REFUSALS
)
async def get_pilot(
    application_id: uuid.UUID, caller: CurrentCaller, db: DbConn, res: Res
) -> PilotState:
    """The pilot: its sites (status, period, deadline, targets and results), the evaluation and
    the decision. The applicant, admins and the pilot's evaluator may read it."""
    found = await pilot.pilot(db, application_id)
    if found is None or caller.actor.user_id != found.evaluator_id:
        await application_service.get(res, caller, str(application_id))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this application has no pilot")
    return found


# --- clinic coordinators ------------------------------------------------------------------------


@router.get("/v1/clinic/sites", response_model=list[SiteState])
async def clinic_sites(
    caller: Coordinator, db: DbConn, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[SiteState]:
    """The pilot sites at the coordinator's clinic, newest first; no other clinic's."""
    assert caller.actor.institution_id is not None
    return await pilot.clinic_sites(db, caller.actor.institution_id, limit)


async def _own_site(db: DbConn, caller: Caller, site_id: str) -> SiteState:
    found = await pilot.site(db, site_id)
    if found is None or found.clinic_id != caller.actor.institution_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such site at your clinic")
    return found


async def _answer(res: Res, site_id: str, answer: SiteAnswer) -> SiteState:
    state: SiteState = await res.client.get_workflow_handle(site_id).execute_update(
        PilotSiteWorkflow.answer, answer
    )
    return state


@router.post("/v1/sites/{site_id}/acceptance", response_model=SiteState, responses=REFUSALS)
async def accept_site(site_id: str, caller: Coordinator, db: DbConn, res: Res) -> SiteState:
    """The clinic accepts the pilot: it starts at the planned date."""
    await _own_site(db, caller, site_id)
    return await _answer(res, site_id, SiteAnswer(actor=caller.actor, accept=True))


@router.post("/v1/sites/{site_id}/decline", response_model=SiteState, responses=REFUSALS)
async def decline_site(
    site_id: str, body: SiteDecline, caller: Coordinator, db: DbConn, res: Res
) -> SiteState:
    """The clinic declines, with a reason; an admin proposes another clinic."""
    await _own_site(db, caller, site_id)
    return await _answer(
        res, site_id, SiteAnswer(actor=caller.actor, accept=False, reason=body.reason)
    )


@router.post("/v1/sites/{site_id}/report", response_model=SiteState, responses=REFUSALS)
async def report_site(
    site_id: str, body: SiteReportCreate, caller: Coordinator, db: DbConn, res: Res
) -> SiteState:
    """The site's report once its period is over: every planned metric's measured value."""
    await _own_site(db, caller, site_id)
    state: SiteState = await res.client.get_workflow_handle(site_id).execute_update(
        PilotSiteWorkflow.report, SiteReport(actor=caller.actor, **body.model_dump())
    )
    return state


# --- the evaluator ------------------------------------------------------------------------------


@router.get("/v1/evaluations", response_model=list[str])
async def my_evaluations(
    caller: Expert, db: DbConn, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[str]:
    """The applications whose pilot waits for this expert's evaluation, longest waiting first,
    at most `limit` (each leaves the list once evaluated)."""
    return await pilot.evaluations_for(db, uuid.UUID(caller.actor.user_id), limit)


@router.post(
    "/v1/applications/{application_id}/pilot/evaluation",
    response_model=PilotState,
    responses=REFUSALS,
)
async def evaluate(
    application_id: uuid.UUID, body: EvaluationCreate, caller: Expert, db: DbConn, res: Res
) -> PilotState:
    """The evaluator's recommendation (implement, extend or stop) with comments; the
    results against the targets are attached by the pilot. Another expert gets a 404."""
    found = await pilot.pilot(db, application_id)
    if found is None or found.evaluator_id != caller.actor.user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no evaluation of yours here")
    state: PilotState = await _pilot(res, application_id).execute_update(
        PilotWorkflow.evaluate, EvaluationSubmission(actor=caller.actor, **body.model_dump())
    )
    return state


# --- admins -------------------------------------------------------------------------------------


@router.post(
    "/v1/admin/applications/{application_id}/pilot/sites",
    response_model=PilotState,
    responses=REFUSALS,
)
async def propose_site(
    application_id: uuid.UUID, body: SiteProposalCreate, caller: Admin, db: DbConn, res: Res
) -> PilotState:
    """Replace a declined site with another clinic."""
    await _clinics_exist(db, [body.plan.clinic_id])
    state: PilotState = await _pilot(res, application_id).execute_update(
        PilotWorkflow.propose_site,
        SiteProposal(actor=caller.actor, plan=body.plan, replaces=body.replaces),
    )
    return state


@router.post(
    "/v1/admin/applications/{application_id}/pilot/evaluator",
    response_model=PilotState,
    responses=REFUSALS,
)
async def assign_evaluator(
    application_id: uuid.UUID, evaluator_id: Annotated[str, Query()], caller: Admin, res: Res
) -> PilotState:
    """Name the evaluator by hand when no eligible expert was found (the same rules apply)."""
    state: PilotState = await _pilot(res, application_id).execute_update(
        PilotWorkflow.assign_evaluator,
        EvaluatorAssignment(actor=caller.actor, evaluator_id=evaluator_id),
    )
    return state


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
    state: PilotState = await _pilot(res, application_id).execute_update(
        PilotWorkflow.decide, PilotDecision(actor=caller.actor, **body.model_dump())
    )
    return state


@router.get("/v1/admin/reports/overdue", response_model=list[OverdueReport])
async def overdue_reports(
    _: Admin,
    db: DbConn,
    programme_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[OverdueReport]:
    """Reports past their deadline and not in, oldest deadline first."""
    return await agreement.overdue_reports(db, programme_id, limit)


@router.get(
    "/v1/programmes/{programme_id}/outcomes", response_model=PilotSummary, responses=REFUSALS
)
async def outcomes(programme_id: uuid.UUID, _: Admin, db: DbConn) -> PilotSummary:
    """Projects, closed and implemented (and the share implemented), pilot sites by clinic
    and status, overdue reports."""
    if await programme.get_start(db, programme_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    return await pilot.summary(db, programme_id)
