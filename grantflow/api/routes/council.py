"""The council: open a session, read its agenda, vote, decide, close; the programme's ledger
and figures. Votes and decisions are Updates of the session's workflow; their validators refuse
a non-member, an item not on the agenda, a closed session or an amount above the request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from grantflow.api.deps import Admin, Caller, DbConn, Res, require
from grantflow.store import council, figures, ledger, programme
from schemas.common import ApiError, Role
from schemas.council import (
    CloseRequest,
    DecideRequest,
    Decision,
    LedgerBalance,
    SessionCreate,
    SessionStart,
    SessionState,
    Tally,
    VoteCreate,
    VoteRequest,
)
from schemas.figures import ProgrammeFigures
from workflows import ids
from workflows.application import PROGRAMME
from workflows.council import CouncilSessionWorkflow

router = APIRouter(tags=["council"])
CouncilOrAdmin = Annotated[Caller, Depends(require(Role.council, Role.admin))]
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such session or programme."},
    409: {"model": ApiError, "description": "Refused by the session: the reason says why."},
}


def session_handle(res: Res, session_id: str) -> Any:
    return res.client.get_workflow_handle(ids.council(session_id))


@router.post(
    "/v1/programmes/{programme_id}/council-sessions",
    response_model=SessionState,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def open_session(
    programme_id: uuid.UUID, body: SessionCreate, caller: Admin, db: DbConn, res: Res
) -> SessionState:
    """Open a council session. Its agenda is every `reviewed` or `deferred` application of the
    programme, best score first, with the reviews' scores, recommendations and comments (never
    the reviewers' names) and the amount requested."""
    programme_start = await programme.get_start(db, programme_id)
    if programme_start is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    try:
        members = await council.members(db, body.member_ids)
    except ValueError:  # not even a uuid: no such member (was a 500, found by schemathesis)
        members = []
    if body.member_ids is not None and len(members) != len(set(body.member_ids)):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown member id")
    if not members or any(m.role != Role.council for m in members):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "members must be council members (at least one)"
        )
    chair = body.chair_id or caller.actor.user_id
    if chair != caller.actor.user_id and chair not in {m.user_id for m in members}:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "the chair must be a member or you"
        )
    session_id = str(uuid.uuid4())
    start = SessionStart(
        session_id=session_id,
        programme_id=str(programme_id),
        name=body.name,
        members=members,
        chair_id=chair,
        quorum=min(programme_start.spec.params.council_quorum, len(members)),
        opened_by=caller.actor,
        opened_at=datetime.now(UTC),
    )
    state: SessionState = await res.client.execute_update_with_start_workflow(
        CouncilSessionWorkflow.opened,
        start_workflow_operation=WithStartWorkflowOperation(
            CouncilSessionWorkflow.run,
            start,
            id=ids.council(session_id),
            task_queue=res.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PROGRAMME, str(programme_id))]
            ),
        ),
    )
    return state


@router.get("/v1/council-sessions/{session_id}", response_model=SessionState, responses=REFUSALS)
async def get_session(session_id: uuid.UUID, _: CouncilOrAdmin, res: Res) -> SessionState:
    """The session: its agenda, the tally of votes on each item and the decisions so far."""
    state: SessionState = await session_handle(res, str(session_id)).query(
        CouncilSessionWorkflow.state
    )
    return state


@router.post("/v1/council-sessions/{session_id}/votes", response_model=Tally, responses=REFUSALS)
async def vote(
    session_id: uuid.UUID,
    body: VoteCreate,
    caller: Annotated[Caller, Depends(require(Role.council))],
    res: Res,
) -> Tally:
    """Vote on an agenda item: approve (optionally for less than requested), reject or defer,
    with a reason. Voting again on the same item replaces your vote. Returns the item's tally."""
    tally: Tally = await session_handle(res, str(session_id)).execute_update(
        CouncilSessionWorkflow.vote, VoteRequest(actor=caller.actor, **body.model_dump())
    )
    return tally


@router.post(
    "/v1/council-sessions/{session_id}/decisions/{application_id}",
    response_model=Decision,
    responses=REFUSALS,
)
async def decide(
    session_id: uuid.UUID, application_id: uuid.UUID, caller: CouncilOrAdmin, res: Res
) -> Decision:
    """The chair decides one item now from the votes cast: the majority once the quorum has
    voted. An approval the remaining budget cannot cover is refused (409) with the amount
    left, and the item stays open."""
    decision: Decision = await session_handle(res, str(session_id)).execute_update(
        CouncilSessionWorkflow.decide,
        DecideRequest(actor=caller.actor, application_id=str(application_id)),
    )
    return decision


@router.post(
    "/v1/council-sessions/{session_id}/close",
    response_model=list[Decision],
    responses=REFUSALS,
)
async def close(session_id: uuid.UUID, caller: CouncilOrAdmin, res: Res) -> list[Decision]:
    """The chair closes the session: every item not decided yet is decided now, in rank order
    (without the quorum, or when the budget cannot cover it, an item is deferred to the next
    session with the reason). Returns every decision of the session."""
    decisions: list[Decision] = await session_handle(res, str(session_id)).execute_update(
        CouncilSessionWorkflow.close, CloseRequest(actor=caller.actor)
    )
    return decisions


@router.get(
    "/v1/programmes/{programme_id}/ledger",
    response_model=LedgerBalance,
    responses={404: {"model": ApiError}},
)
async def programme_ledger(programme_id: uuid.UUID, _: Admin, db: DbConn) -> LedgerBalance:
    """The programme's budget ledger: every entry, the sums recomputed from them, and whether
    they hold together (`balanced`, with `problems` when not)."""
    found = await ledger.balance(db, programme_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    return found


@router.get(
    "/v1/programmes/{programme_id}/figures",
    response_model=ProgrammeFigures,
    responses={404: {"model": ApiError}},
)
async def programme_figures(programme_id: uuid.UUID, _: Admin, db: DbConn) -> ProgrammeFigures:
    """Applications by stage, approval rate, and the amounts requested, approved, reserved,
    disbursed and remaining, in total and by institution."""
    found = await figures.programme(db, programme_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    return found
