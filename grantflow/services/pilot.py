"""Pilot testing: the plan, the pilot's state, the independent evaluation, the decision,
and the programme's outcomes.

The plan is an Update of the application's workflow, which starts the pilot; everything
after is an Update of the pilot's workflow. Reads come from PostgreSQL. Another applicant's
pilot, or another expert's evaluation, is NotFound."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from temporalio.client import WorkflowHandle

from grantflow.services import application
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Invalid, NotFound
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.services.updates import send
from grantflow.store import pilot, programme
from schemas.application import ApplicationStatus
from schemas.common import Role
from schemas.pilot import (
    EvaluationCreate,
    EvaluationSubmission,
    EvaluatorAssignment,
    PilotDecision,
    PilotDecisionCreate,
    PilotOutcome,
    PilotPlanCreate,
    PilotPlanRequest,
    PilotState,
    PilotSummary,
    SiteProposal,
    SiteProposalCreate,
)
from workflows import ids
from workflows.application import ApplicationWorkflow
from workflows.pilot import PilotWorkflow

NOT_FOUND = "this application has no pilot"


def _handle(
    res: Resources, application_id: uuid.UUID
) -> WorkflowHandle[PilotWorkflow, PilotOutcome]:
    return res.client.get_workflow_handle_for(PilotWorkflow.run, ids.pilot(application_id))


async def _clinics_exist(res: Resources, clinic_ids: Iterable[str]) -> None:
    for clinic in clinic_ids:
        if not await pilot.is_clinic(res.pool, clinic):
            raise Invalid(f"{clinic} is not a known clinic")


async def plan(
    res: Resources, caller: Caller, application_id: uuid.UUID, body: PilotPlanCreate
) -> ApplicationStatus:
    """Plan the pilot once the agreement is accepted (its applicant, or an admin): the
    clinics (sites), each with its start, duration and the metrics it will report with their
    targets; each clinic's coordinators are asked to accept. Invalid for an unknown clinic,
    Conflict when the application is not waiting for a plan."""
    require(caller, Role.applicant, Role.admin)
    await application.get(res, caller, str(application_id))
    await _clinics_exist(res, (s.clinic_id for s in body.sites))
    handle = res.client.get_workflow_handle_for(
        ApplicationWorkflow.run, ids.application(application_id)
    )
    return await send(
        res, handle, ApplicationWorkflow.plan_pilot, PilotPlanRequest(actor=caller.actor, plan=body)
    )


async def get(res: Resources, caller: Caller, application_id: uuid.UUID) -> PilotState:
    """The pilot: its sites (status, period, deadline, targets and results), the evaluation
    and the decision. The applicant, admins and the pilot's evaluator may read it."""
    found = await pilot.pilot(res.pool, application_id)
    if found is None or caller.actor.user_id != found.evaluator_id:
        await application.get(res, caller, str(application_id))
    if found is None:
        raise NotFound(NOT_FOUND)
    return found


async def evaluations(res: Resources, caller: Caller, limit: int = 50) -> list[str]:
    """The applications whose pilot waits for the calling expert's evaluation, longest
    waiting first (each leaves the list once evaluated). Experts only."""
    require(caller, Role.reviewer)
    return await pilot.evaluations_for(res.pool, uuid.UUID(caller.actor.user_id), limit)


async def evaluate(
    res: Resources, caller: Caller, application_id: uuid.UUID, body: EvaluationCreate
) -> PilotState:
    """The evaluator's recommendation (implement, extend or stop) with comments; the pilot
    attaches the results against the targets. Only the expert assigned (any other gets
    NotFound); Conflict while the sites' reports are not all in."""
    require(caller, Role.reviewer)
    found = await pilot.pilot(res.pool, application_id)
    if found is None or found.evaluator_id != caller.actor.user_id:
        raise NotFound("no evaluation of yours here")
    return await send(
        res,
        _handle(res, application_id),
        PilotWorkflow.evaluate,
        EvaluationSubmission(actor=caller.actor, **body.model_dump()),
    )


async def propose_site(
    res: Resources, caller: Caller, application_id: uuid.UUID, body: SiteProposalCreate
) -> PilotState:
    """Replace a declined site with another clinic (admins). Invalid for an unknown clinic,
    Conflict when the site replaced was not declined."""
    require(caller, Role.admin)
    await _clinics_exist(res, [body.plan.clinic_id])
    return await send(
        res,
        _handle(res, application_id),
        PilotWorkflow.propose_site,
        SiteProposal(actor=caller.actor, plan=body.plan, replaces=body.replaces),
    )


async def assign_evaluator(
    res: Resources, caller: Caller, application_id: uuid.UUID, evaluator_id: str
) -> PilotState:
    """Name the evaluator by hand when no eligible expert was found (admins); the same
    conflict-of-interest rules apply (Conflict)."""
    require(caller, Role.admin)
    return await send(
        res,
        _handle(res, application_id),
        PilotWorkflow.assign_evaluator,
        EvaluatorAssignment(actor=caller.actor, evaluator_id=evaluator_id),
    )


async def decide(
    res: Resources, caller: Caller, application_id: uuid.UUID, body: PilotDecisionCreate
) -> PilotState:
    """Decide on the evaluated pilot (admins): implement (reporting goes on to the final
    report), extend (a further period at the sites named, then a new evaluation) or stop
    (unpaid tranches are cancelled, the money returns to the budget). Conflict before the
    evaluation is in."""
    require(caller, Role.admin)
    return await send(
        res,
        _handle(res, application_id),
        PilotWorkflow.decide,
        PilotDecision(actor=caller.actor, **body.model_dump()),
    )


async def outcomes(res: Resources, caller: Caller, programme_id: uuid.UUID) -> PilotSummary:
    """The programme's projects, closed and implemented (and the share implemented), pilot
    sites by clinic and status, overdue reports (admins)."""
    require(caller, Role.admin)
    if await programme.get_start(res.pool, programme_id) is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    return await pilot.summary(res.pool, programme_id)
