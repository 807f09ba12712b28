"""Writes of the programme workflow."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities import refuses_bad_data
from activities import workflow_id as current_workflow_id
from grantflow.store import Conn, audit, in_transaction, programme
from schemas.programme import IntakeChange, ProgrammeCorrected, ProgrammeStart


class ProgrammeActivities:
    """Bound to the worker's connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    @refuses_bad_data
    async def register_programme(self, start: ProgrammeStart) -> None:
        """Put a new programme on record with its `created` event.

        Idempotent: the programme id is the primary key and the event key is
        `<workflow id>:created`, both inserted with ON CONFLICT DO NOTHING."""
        workflow_id = current_workflow_id()
        at = activity.info().scheduled_time

        async def write(conn: Conn) -> None:
            await programme.insert(conn, start)
            await audit.append(
                conn,
                event_key=f"{workflow_id}:created",
                workflow_id=workflow_id,
                kind="programme_created",
                at=at,
                programme_id=start.programme_id,
                detail={"created_by": start.created_by, "name": start.spec.name},
            )

        await in_transaction(self._pool, write)

    @activity.defn
    @refuses_bad_data
    async def record_intake_change(self, change: IntakeChange) -> None:
        """Record that intake opened or closed.

        Idempotent: the state only moves forward (scheduled, open, closed) and the event key
        is `<workflow id>:intake:<state>`."""
        workflow_id = current_workflow_id()

        async def write(conn: Conn) -> None:
            await programme.set_intake(conn, change)
            await audit.append(
                conn,
                event_key=f"{workflow_id}:intake:{change.state.value}",
                workflow_id=workflow_id,
                kind=f"intake_{change.state.value}",
                at=change.at,
                programme_id=change.programme_id,
            )

        await in_transaction(self._pool, write)

    @activity.defn
    @refuses_bad_data
    async def record_correction(self, corrected: ProgrammeCorrected) -> None:
        """Write an admin's correction of the programme's screening rules, with the
        `programme_corrected` audit event (the admin, the reason, each field's old and new value).

        Idempotent: the rules are set to the corrected values (not changed by a delta) and the
        event key is `<workflow id>:correction:<correction id>`."""
        workflow_id = current_workflow_id()
        at = activity.info().scheduled_time

        async def write(conn: Conn) -> None:
            await programme.correct(conn, corrected.programme)
            await audit.append(
                conn,
                event_key=f"{workflow_id}:correction:{corrected.correction_id}",
                workflow_id=workflow_id,
                kind="programme_corrected",
                at=at,
                programme_id=corrected.programme.programme_id,
                actor=corrected.actor,
                reason=corrected.reason,
                detail={"changed": corrected.changed},
            )

        await in_transaction(self._pool, write)
