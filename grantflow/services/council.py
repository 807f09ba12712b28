"""The council: open a session, read its agenda, vote, decide, close; the programme's ledger
and figures.

Votes and decisions are Updates of the session's workflow; their validators refuse a
non-member, an item not on the agenda, a closed session or an amount above the request (a
Conflict with the reason)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from temporalio.client import WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from grantflow.services.application import parse_id
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Invalid, NotFound, temporal_refusals
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.services.updates import answered, send
from grantflow.store import council, figures, ledger, programme
from schemas.common import Actor, Role
from schemas.council import (
    CloseRequest,
    DecideRequest,
    Decision,
    LedgerBalance,
    SessionBudget,
    SessionCreate,
    SessionListItem,
    SessionStart,
    SessionState,
    SessionSummary,
    Tally,
    VoteCreate,
    VoteRequest,
    VoteSpec,
)
from schemas.figures import ProgrammeFigures
from workflows import ids
from workflows.application import PROGRAMME
from workflows.council import CouncilSessionWorkflow

NOT_FOUND = "council session not found"
# A session opened with an Idempotency-Key takes its id from the key, so that the retry of an
# opening that was told to retry (503, the worker slow to take it up) finds the same session:
# a second one would leave the first one's agenda `in_council` with nobody voting on it.
SESSION_KEYS = uuid.UUID("5d0c2f7e-8b1a-4f3e-9c6d-2a7b1e4f8c90")


def _session(
    res: Resources, session_id: str
) -> WorkflowHandle[CouncilSessionWorkflow, list[Decision]]:
    return res.client.get_workflow_handle_for(
        CouncilSessionWorkflow.run, ids.council(parse_id(session_id, NOT_FOUND))
    )


async def _members(res: Resources, caller: Caller, body: SessionCreate) -> tuple[list[Actor], str]:
    """The session's voting members and its chair, as asked; Invalid unless every member is
    a council member (at least one) and the chair is one of them or the caller."""
    try:
        members = await council.members(res.pool, body.member_ids)
    except ValueError:  # not even a uuid: no such member (was a 500, found by schemathesis)
        members = []
    if body.member_ids is not None and len(members) != len(set(body.member_ids)):
        raise Invalid("unknown member id")
    if not members or any(m.role != Role.council for m in members):
        raise Invalid("members must be council members (at least one)")
    chair = body.chair_id or caller.actor.user_id
    if chair != caller.actor.user_id and chair not in {m.user_id for m in members}:
        raise Invalid("the chair must be a member or you")
    return members, chair


async def open_session(
    res: Resources,
    caller: Caller,
    programme_id: uuid.UUID,
    body: SessionCreate,
    idempotency_key: str | None = None,
) -> SessionState:
    """Open a council session for a programme (admins). Its agenda is every `reviewed` or
    `deferred` application of the programme, best score first, with the reviews' scores,
    recommendations and comments (never the reviewers' names) and the amount requested. The
    quorum is the programme's, at most the number of members. Members who are not council
    members, or a chair who is neither a member nor the caller, are Invalid. A retry with the
    same idempotency key returns the same session, open or closed (a different session under a
    used key is Invalid); with no worker up, Unavailable."""
    require(caller, Role.admin)
    programme_start = await programme.get_start(res.pool, programme_id)
    if programme_start is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    members, chair = await _members(res, caller, body)
    keyed = f"{programme_id}:{caller.actor.user_id}:{idempotency_key}"
    session_id = str(uuid.uuid5(SESSION_KEYS, keyed) if idempotency_key else uuid.uuid4())
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
    # Retries share the running session (USE_EXISTING) and its one `opened` update; a closed
    # one is never started again under its id (REJECT_DUPLICATE).
    run = WithStartWorkflowOperation(
        CouncilSessionWorkflow.run,
        start,
        id=ids.council(session_id),
        task_queue=res.settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING
        if idempotency_key
        else WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(PROGRAMME, str(programme_id))]
        ),
    )
    try:
        state = await answered(
            res,
            ids.council(session_id),
            res.client.execute_update_with_start_workflow(
                CouncilSessionWorkflow.opened, id="opened", start_workflow_operation=run
            ),
            started=run,
        )
    except WorkflowAlreadyStartedError:
        if not idempotency_key:
            raise  # a fresh uuid4 already taken: a fault, not a refusal
        state = await get_session(res, caller, session_id)  # closed since: it still answers
    if state.name != body.name or set(state.members) != {m.user_id for m in members}:
        raise Invalid("this Idempotency-Key was used for a different session")
    return state


async def get_session(res: Resources, caller: Caller, session_id: str) -> SessionState:
    """The session: its agenda, the tally of votes on each item and the decisions so far
    (council members and admins)."""
    require(caller, Role.council, Role.admin)
    with temporal_refusals():
        return await _session(res, session_id).query(CouncilSessionWorkflow.state)


async def institution_names(res: Resources, caller: Caller, state: SessionState) -> dict[str, str]:
    """The names of the institutions that sent the session's agenda items, by id, for the
    agenda to name them (council members and admins)."""
    require(caller, Role.council, Role.admin)
    ids = sorted({i.institution_id for i in state.agenda if i.institution_id})
    return await council.institution_names(res.pool, ids) if ids else {}


async def my_sessions(res: Resources, caller: Caller, limit: int = 100) -> list[SessionListItem]:
    """The council sessions the calling member sits on, open ones first, each with its
    programme, how many items it has, how many are decided and how many the member has
    voted on. Council members only."""
    require(caller, Role.council)
    return await council.member_sessions(res.pool, uuid.UUID(caller.actor.user_id), limit)


async def my_votes(res: Resources, caller: Caller, session_id: str) -> list[VoteSpec]:
    """The calling member's latest vote on each item of the session (none for a session the
    caller does not sit on). Council members only."""
    require(caller, Role.council)
    found = parse_id(session_id, NOT_FOUND)
    return await council.member_votes(res.pool, found, uuid.UUID(caller.actor.user_id))


async def session_budget(res: Resources, caller: Caller, session_id: str) -> SessionBudget:
    """The budget of the session's programme as it stands: the whole budget, what approvals
    hold and what is left for the items still to decide (council members and admins)."""
    require(caller, Role.council, Role.admin)
    found = await council.session_budget(res.pool, parse_id(session_id, NOT_FOUND))
    if found is None:
        raise NotFound(NOT_FOUND)
    return found


async def sessions_of_programme(
    res: Resources, caller: Caller, programme_id: uuid.UUID, limit: int = 100
) -> list[SessionSummary]:
    """The programme's council sessions, the latest opened first, open or closed (admins).
    NotFound for an unknown programme."""
    require(caller, Role.admin)
    if await programme.get_start(res.pool, programme_id) is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    return await council.sessions_of_programme(res.pool, programme_id, limit)


async def council_members(res: Resources, caller: Caller) -> list[Actor]:
    """Every council member, who may sit on a session (admins)."""
    require(caller, Role.admin)
    return await council.members(res.pool, None)


async def vote(res: Resources, caller: Caller, session_id: str, body: VoteCreate) -> Tally:
    """Vote on an agenda item (the session's members): approve (optionally for less than
    requested), reject or defer, with a reason. Voting again on the same item replaces the
    vote. Returns the item's tally."""
    require(caller, Role.council)
    return await send(
        res,
        _session(res, session_id),
        CouncilSessionWorkflow.vote,
        VoteRequest(actor=caller.actor, **body.model_dump()),
    )


async def decide(res: Resources, caller: Caller, session_id: str, application_id: str) -> Decision:
    """The chair decides one item now from the votes cast: the majority once the quorum has
    voted. An approval the remaining budget cannot cover is refused (Conflict) with the amount
    left, and the item stays open."""
    require(caller, Role.council, Role.admin)
    return await send(
        res,
        _session(res, session_id),
        CouncilSessionWorkflow.decide,
        DecideRequest(actor=caller.actor, application_id=application_id),
    )


async def close(res: Resources, caller: Caller, session_id: str) -> list[Decision]:
    """The chair closes the session: every item not decided yet is decided now, in rank order
    (without the quorum, or when the budget cannot cover it, an item is deferred to the next
    session with the reason). Returns every decision of the session."""
    require(caller, Role.council, Role.admin)
    return await send(
        res,
        _session(res, session_id),
        CouncilSessionWorkflow.close,
        CloseRequest(actor=caller.actor),
    )


async def programme_ledger(
    res: Resources, caller: Caller, programme_id: uuid.UUID
) -> LedgerBalance:
    """The programme's budget ledger: every entry, the sums recomputed from them, and whether
    they hold together (`balanced`, with `problems` when not). Admins only."""
    require(caller, Role.admin)
    found = await ledger.balance(res.pool, programme_id)
    if found is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    return found


async def programme_figures(
    res: Resources, caller: Caller, programme_id: uuid.UUID
) -> ProgrammeFigures:
    """Applications by stage, approval rate, and the amounts requested, approved, reserved,
    disbursed and remaining, in total and by institution. Admins only."""
    require(caller, Role.admin)
    found = await figures.programme(res.pool, programme_id)
    if found is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    return found
