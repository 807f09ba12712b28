"""The council: open a session, read its agenda, vote, decide, close; the programme's ledger
and figures. Votes and decisions are Updates of the session's workflow; their validators refuse
a non-member, an item not on the agenda, a closed session or an amount above the request."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, status

from grantflow.api.deps import Admin, Caller, Res, require
from grantflow.services import council
from schemas.common import ApiError, Role
from schemas.council import Decision, LedgerBalance, SessionCreate, SessionState, Tally, VoteCreate
from schemas.figures import ProgrammeFigures

router = APIRouter(tags=["council"])
CouncilOrAdmin = Annotated[Caller, Depends(require(Role.council, Role.admin))]
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such session or programme."},
    409: {"model": ApiError, "description": "Refused by the session: the reason says why."},
}


@router.post(
    "/v1/programmes/{programme_id}/council-sessions",
    response_model=SessionState,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def open_session(
    programme_id: uuid.UUID,
    body: SessionCreate,
    caller: Admin,
    res: Res,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Retries with the same key return the same session.",
        ),
    ] = None,
) -> SessionState:
    """Open a council session. Its agenda is every `reviewed` or `deferred` application of the
    programme, best score first, with the reviews' scores, recommendations and comments (never
    the reviewers' names) and the amount requested. After a 503, retry with the same
    Idempotency-Key: a second session would not take the first one's agenda."""
    return await council.open_session(res, caller, programme_id, body, idempotency_key)


@router.get("/v1/council-sessions/{session_id}", response_model=SessionState, responses=REFUSALS)
async def get_session(session_id: uuid.UUID, caller: CouncilOrAdmin, res: Res) -> SessionState:
    """The session: its agenda, the tally of votes on each item and the decisions so far."""
    return await council.get_session(res, caller, str(session_id))


@router.post("/v1/council-sessions/{session_id}/votes", response_model=Tally, responses=REFUSALS)
async def vote(
    session_id: uuid.UUID,
    body: VoteCreate,
    caller: Annotated[Caller, Depends(require(Role.council))],
    res: Res,
) -> Tally:
    """Vote on an agenda item: approve (optionally for less than requested), reject or defer,
    with a reason. Voting again on the same item replaces your vote. Returns the item's tally."""
    return await council.vote(res, caller, str(session_id), body)


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
    return await council.decide(res, caller, str(session_id), str(application_id))


@router.post(
    "/v1/council-sessions/{session_id}/close",
    response_model=list[Decision],
    responses=REFUSALS,
)
async def close(session_id: uuid.UUID, caller: CouncilOrAdmin, res: Res) -> list[Decision]:
    """The chair closes the session: every item not decided yet is decided now, in rank order
    (without the quorum, or when the budget cannot cover it, an item is deferred to the next
    session with the reason). Returns every decision of the session."""
    return await council.close(res, caller, str(session_id))


@router.get(
    "/v1/programmes/{programme_id}/ledger",
    response_model=LedgerBalance,
    responses={404: {"model": ApiError}},
)
async def programme_ledger(programme_id: uuid.UUID, caller: Admin, res: Res) -> LedgerBalance:
    """The programme's budget ledger: every entry, the sums recomputed from them, and whether
    they hold together (`balanced`, with `problems` when not)."""
    return await council.programme_ledger(res, caller, programme_id)


@router.get(
    "/v1/programmes/{programme_id}/figures",
    response_model=ProgrammeFigures,
    responses={404: {"model": ApiError}},
)
async def programme_figures(programme_id: uuid.UUID, caller: Admin, res: Res) -> ProgrammeFigures:
    """Applications by stage, approval rate, and the amounts requested, approved, reserved,
    disbursed and remaining, in total and by institution."""
    return await council.programme_figures(res, caller, programme_id)
