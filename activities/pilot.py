"""Writes of the pilot and site workflows, with their audit events and notifications, and the
choice of the pilot's evaluator."""

from __future__ import annotations

import functools

import asyncpg
import structlog
from temporalio import activity

from grantflow.notify import Sender
from grantflow.store import Conn, audit, notifications, pilot, review
from schemas.notifications import NewNotification
from schemas.pilot import EvaluatorFound, EvaluatorRequest, PilotChange, SiteChange
from workflows import ids

log = structlog.get_logger(__name__)


class PilotActivities:
    """Bound to the worker's connection pool and notification sender."""

    def __init__(self, pool: asyncpg.Pool, sender: Sender) -> None:
        self._pool = pool
        self._sender = sender

    @activity.defn
    async def record_site(self, change: SiteChange) -> None:
        """Write the site as its workflow holds it, with the audit event and its notifications
        (to every coordinator of the clinic, or every admin); then deliver them.

        Idempotent: the row only moves forward (its `version` must be below the change's), the
        event key is `<site id>:<version>`, and notifications are keyed."""
        async with self._pool.acquire() as conn, conn.transaction():
            notes = await notifications.copies(
                change.notify_coordinators,
                functools.partial(pilot.coordinators, conn, change.state.clinic_id),
            ) + await notifications.copies(
                change.notify_admins, functools.partial(review.admins, conn)
            )
            await pilot.save_site(
                conn, change.state, change.programme_id, change.version, change.at
            )
            await self._write(
                conn,
                notes,
                event_key=f"{change.state.site_id}:{change.version}",
                workflow_id=change.state.site_id,
                kind=change.kind,
                change=change,
                detail={"site_id": change.state.site_id, "clinic_id": change.state.clinic_id},
            )
        await self._deliver(notes)
        log.info("site change", site_id=change.state.site_id, kind=change.kind)

    @activity.defn
    async def record_pilot(self, change: PilotChange) -> None:
        """Write the pilot as its workflow holds it, with the audit event and notifications.

        Idempotent: the row only moves forward (its `version` must be below the change's), the
        event key is `pilot-<application id>:<version>`, and notifications are keyed."""
        async with self._pool.acquire() as conn, conn.transaction():
            notes = list(change.notify) + await notifications.copies(
                change.notify_admins, functools.partial(review.admins, conn)
            )
            await pilot.save_pilot(
                conn, change.state, change.programme_id, change.version, change.at
            )
            await self._write(
                conn,
                notes,
                event_key=f"pilot-{change.state.application_id}:{change.version}",
                workflow_id=ids.pilot(change.state.application_id),
                kind=change.kind,
                change=change,
                detail={"status": change.state.status.value, "round": change.state.round},
            )
        await self._deliver(notes)
        log.info("pilot change", application_id=change.state.application_id, kind=change.kind)

    @activity.defn
    async def find_evaluator(self, request: EvaluatorRequest) -> EvaluatorFound:
        """The pilot's independent expert, by the review stage's matching and conflict rules.

        Idempotent: it only reads; the workflow records the choice."""
        async with self._pool.acquire() as conn, conn.transaction():
            evaluator, refusal = await pilot.find_evaluator(conn, request)
        return EvaluatorFound(evaluator=evaluator, refusal=refusal)

    async def _write(
        self,
        conn: Conn,
        notes: list[NewNotification],
        *,
        event_key: str,
        workflow_id: str,
        kind: str,
        change: SiteChange | PilotChange,
        detail: dict[str, object],
    ) -> None:
        await notifications.add(conn, notes)
        await audit.append(
            conn,
            event_key=event_key,
            workflow_id=workflow_id,
            kind=kind,
            at=change.at,
            application_id=change.state.application_id,
            programme_id=change.programme_id,
            actor=change.actor,
            reason=change.reason,
            detail=detail,
        )

    async def _deliver(self, notes: list[NewNotification]) -> None:
        if notes:
            await notifications.deliver(self._pool, [n.key for n in notes], self._sender)
