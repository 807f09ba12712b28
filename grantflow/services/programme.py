"""Programmes (calls for applications): created by admins, read by everyone signed in."""

from __future__ import annotations

import uuid
from datetime import datetime

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Invalid, NotFound
from grantflow.services.updates import answered
from grantflow.store import programme
from schemas.common import Role
from schemas.programme import (
    MAX_REPORTS_PER_YEAR,
    CorrectionPublic,
    IntakeState,
    ProgrammeChanges,
    ProgrammeCorrection,
    ProgrammeCorrectionCreate,
    ProgrammeCreate,
    ProgrammePublic,
    ProgrammeSpec,
    ProgrammeStart,
)
from workflows import ids
from workflows.application import PROGRAMME
from workflows.programme import ProgrammeWorkflow

NOT_FOUND = "programme not found"


def intake_refusal(public: ProgrammePublic, now: datetime) -> str | None:
    """Why an application submitted `now` is refused, or None while intake is open.
    Both the programme workflow's recorded state and the window itself must say open."""
    if now >= public.intake_closes or public.intake_state == IntakeState.closed:
        return (
            f"intake for {public.name!r} closed at "
            f"{public.intake_closes.isoformat()}: late applications are refused"
        )
    if now < public.intake_opens or public.intake_state == IntakeState.scheduled:
        return f"intake for {public.name!r} opens at {public.intake_opens.isoformat()}"
    return None


def reports_refusal(body: ProgrammeCreate) -> str | None:
    """Why a programme's reporting cadence is refused: at most 52 progress and financial
    reports per project year. Checked on creation, not in the model, so that a recorded
    history of a programme with a shorter cadence still replays."""
    per_year = body.params.reports_per_year()
    if per_year > MAX_REPORTS_PER_YEAR:
        return (
            f"report_interval and financial_report_interval ask for {per_year:.0f} reports per "
            f"project year (tranche_interval); at most {MAX_REPORTS_PER_YEAR}"
        )
    return None


async def create(res: Resources, caller: Caller, body: ProgrammeCreate) -> ProgrammePublic:
    """Open a call for applications (admins). Its workflow opens and closes intake on time;
    the answer comes once the programme is on record."""
    require(caller, Role.admin)
    if (refusal := reports_refusal(body)) is not None:
        raise Invalid(refusal)
    programme_id = str(uuid.uuid4())
    spec = ProgrammeSpec.model_validate(body.model_dump())  # the workflow's lenient payload
    start = ProgrammeStart(programme_id=programme_id, created_by=caller.actor.user_id, spec=spec)
    run = _run(res, start)
    await answered(
        res,
        ids.programme(programme_id),
        res.client.execute_update_with_start_workflow(
            ProgrammeWorkflow.registered, id="registered", start_workflow_operation=run
        ),
        started=run,
    )
    return await get(res, caller, uuid.UUID(programme_id))


def _run(
    res: Resources, start: ProgrammeStart
) -> WithStartWorkflowOperation[ProgrammeWorkflow, IntakeState]:
    """The programme's workflow, started unless it is running (then the Update goes to it)."""
    return WithStartWorkflowOperation(
        ProgrammeWorkflow.run,
        start,
        id=ids.programme(start.programme_id),
        task_queue=res.settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(PROGRAMME, start.programme_id)]
        ),
    )


async def list_recent(res: Resources, caller: Caller, limit: int = 50) -> list[ProgrammePublic]:
    """Programmes, newest first (everyone signed in)."""
    return await programme.list_recent(res.pool, limit)


async def get(res: Resources, caller: Caller, programme_id: uuid.UUID) -> ProgrammePublic:
    """One programme with its intake state and parameters (everyone signed in)."""
    found = await programme.get(res.pool, programme_id)
    if found is None:
        raise NotFound(NOT_FOUND)
    return found


async def correct(
    res: Resources, caller: Caller, programme_id: uuid.UUID, body: ProgrammeCorrectionCreate
) -> ProgrammePublic:
    """Correct screening rules entered wrong, with a reason (admins): the maximum grant, the
    admitted organisation types, the specialties, the complex-project share and annual cap;
    never the intake window. Applications submitted from now on are screened by the corrected
    rules; one awaiting revision when an admin re-runs its screening; one already `ineligible`
    has ended and stays so. Returns the programme once the correction is on record."""
    require(caller, Role.admin)
    current = await programme.get_start(res.pool, programme_id)
    if current is None:
        raise NotFound(NOT_FOUND)
    correction_id = str(uuid.uuid4())
    changes = ProgrammeChanges.model_validate(body.model_dump(exclude={"reason"}))
    # Running: the update goes to it. Ended (intake closed): a fresh run of the programme as on
    # record takes it, finds intake closed, and ends once the correction is written.
    run = _run(res, current)
    await answered(
        res,
        ids.programme(current.programme_id),
        res.client.execute_update_with_start_workflow(
            ProgrammeWorkflow.correct,
            ProgrammeCorrection(
                correction_id=correction_id, actor=caller.actor, reason=body.reason, changes=changes
            ),
            id=f"correction-{correction_id}",
            start_workflow_operation=run,
        ),
        started=run,
    )
    return await get(res, caller, programme_id)


async def corrections(
    res: Resources, caller: Caller, programme_id: uuid.UUID
) -> list[CorrectionPublic]:
    """Every correction of the programme, oldest first: who, when, why, and each changed
    field's old and new value (admins)."""
    require(caller, Role.admin)
    await get(res, caller, programme_id)
    return await programme.corrections(res.pool, programme_id)
