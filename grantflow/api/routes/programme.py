"""Programmes: calls for applications, created by admins, read by everyone signed in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from grantflow.api.deps import Admin, CurrentCaller, DbConn, Res
from grantflow.store import programme
from schemas.common import ApiError, InvalidInput
from schemas.programme import (
    MAX_REPORTS_PER_YEAR,
    IntakeState,
    ProgrammeCreate,
    ProgrammePublic,
    ProgrammeStart,
)
from workflows.application import PROGRAMME
from workflows.programme import ProgrammeWorkflow

router = APIRouter(prefix="/v1/programmes", tags=["programmes"])


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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProgrammePublic,
    responses={403: {"model": ApiError}, 422: {"model": InvalidInput}},
)
async def create_programme(
    body: ProgrammeCreate, caller: Admin, conn: DbConn, res: Res
) -> ProgrammePublic:
    """Open a call for applications. Its workflow opens and closes intake on time. A project
    owes at most 52 progress and financial reports per project year (`tranche_interval`)."""
    per_year = body.params.reports_per_year()
    if per_year > MAX_REPORTS_PER_YEAR:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"report_interval and financial_report_interval ask for {per_year:.0f} reports per "
            f"project year (tranche_interval); at most {MAX_REPORTS_PER_YEAR}",
        )
    programme_id = str(uuid.uuid4())
    start = ProgrammeStart(programme_id=programme_id, created_by=caller.actor.user_id, spec=body)
    await res.client.execute_update_with_start_workflow(
        ProgrammeWorkflow.registered,
        id="registered",
        start_workflow_operation=WithStartWorkflowOperation(
            ProgrammeWorkflow.run,
            start,
            id=f"programme-{programme_id}",
            task_queue=res.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(PROGRAMME, programme_id)]),
        ),
    )
    created = await programme.get(conn, uuid.UUID(programme_id))
    assert created is not None  # the update returns only once the row is written
    return created


@router.get("", response_model=list[ProgrammePublic])
async def list_programmes(
    _: CurrentCaller, conn: DbConn, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ProgrammePublic]:
    """Programmes, newest first."""
    return await programme.list_recent(conn, limit)


@router.get("/{programme_id}", response_model=ProgrammePublic, responses={404: {"model": ApiError}})
async def get_programme(programme_id: uuid.UUID, _: CurrentCaller, conn: DbConn) -> ProgrammePublic:
    """One programme with its intake state and parameters."""
    found = await programme.get(conn, programme_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    return found
