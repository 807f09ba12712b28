"""Writes of the council session workflow: the session, its agenda, votes, decisions, and the
reservations decisions make in the programme's ledger."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from activities import refuses_bad_data
from activities import workflow_id as current_workflow_id
from grantflow.store import Conn, audit, council, in_transaction, ledger
from schemas.council import AgendaItem, Decision, Reservation, Reserved, SessionStart, VoteRecord

log = structlog.get_logger(__name__)


class CouncilActivities:
    """Bound to the worker's connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    @refuses_bad_data
    async def open_session(self, start: SessionStart) -> list[AgendaItem]:
        """Record the session and take its agenda: the programme's reviewed and deferred
        applications not on another open session's agenda, best score first.

        Idempotent: the session id is the key; a retry finds its agenda and returns it."""
        agenda = await in_transaction(self._pool, lambda conn: council.open_session(conn, start))
        log.info("council session opened", session_id=start.session_id, items=len(agenda))
        return agenda

    @activity.defn
    @refuses_bad_data
    async def record_vote(self, record: VoteRecord) -> None:
        """Record a member's vote, replacing its earlier one on the item.

        Idempotent: one row per (session, item, member), overwritten only by a vote at least as
        recent; the audit event's key is the vote's own."""
        v = record.vote
        event = audit.event_args(
            event_key=f"vote:{record.session_id}:{v.application_id}:{v.actor.user_id}:"
            f"{record.at.isoformat()}",
            workflow_id=current_workflow_id(),
            kind="council_vote",
            at=record.at,
            application_id=v.application_id,
            actor=v.actor,
            reason=v.reason,
            detail={"choice": v.choice.value, "amount_rub": v.amount_rub},
        )
        # One statement, but SERIALIZABLE can still abort it: in_transaction runs it again.
        await in_transaction(
            self._pool,
            lambda conn: council.record_vote(conn, record, event),
            single_statement=True,
        )

    @activity.defn
    @refuses_bad_data
    async def reserve(self, reservation: Reservation) -> Reserved:
        """Reserve an approval's amount if the programme's budget still covers it; a refusal
        leaves no ledger entry.

        Idempotent: the entry's key is `approval:<session>:<application>`; a retry finds it and
        answers as the first call did (after a refusal there is nothing to find, and the
        workflow takes the answer of the attempt that completes). The programme row is locked,
        so concurrent approvals (also from two sessions) queue and the budget is never
        overspent; one aborted as a serialisation failure or deadlock is run again."""
        return await in_transaction(self._pool, lambda conn: ledger.reserve(conn, reservation))

    @activity.defn
    @refuses_bad_data
    async def release(self, reservation: Reservation) -> int:
        """Return an application's unspent reservation. Idempotent: keyed like `reserve`."""
        return await in_transaction(self._pool, lambda conn: ledger.release(conn, reservation))

    @activity.defn
    @refuses_bad_data
    async def record_decision(self, decision: Decision) -> None:
        """Record the decision on an item, with its audit event.

        Idempotent: one decision per (session, item), inserted with ON CONFLICT DO NOTHING."""

        async def write(conn: Conn) -> None:
            await council.record_decision(conn, decision)
            await audit.append(
                conn,
                event_key=f"decision:{decision.session_id}:{decision.application_id}",
                workflow_id=current_workflow_id(),
                kind=f"council_{decision.outcome.value}",
                at=decision.decided_at,
                application_id=decision.application_id,
                reason=decision.reason,
                detail={"amount_rub": decision.amount_rub, **decision.tally.model_dump()},
            )

        await in_transaction(self._pool, write)

    @activity.defn
    @refuses_bad_data
    async def close_session(self, session_id: str) -> None:
        """Mark the session closed. Idempotent: only an open session is closed."""
        at = activity.info().started_time
        await in_transaction(self._pool, lambda conn: council.close_session(conn, session_id, at))
