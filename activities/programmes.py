"""Writes of the programme workflow."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities import workflow_id as current_workflow_id
from schemas.programmes import IntakeChange, ProgrammeStart
from store import audit, programmes


class ProgrammeActivities:
    """Bound to the worker's connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def register_programme(self, start: ProgrammeStart) -> None:
        """Put a new programme on record with its `created` event.

        Idempotent: the programme id is the primary key and the event key is
        `<workflow id>:created`, both inserted with ON CONFLICT DO NOTHING."""
        workflow_id = current_workflow_id()
        async with self._pool.acquire() as conn, conn.transaction():
            await programmes.insert(conn, start)
            await audit.append(
                conn,
                event_key=f"{workflow_id}:created",
                workflow_id=workflow_id,
                kind="programme_created",
                at=activity.info().scheduled_time,
                programme_id=start.programme_id,
                detail={"created_by": start.created_by, "name": start.spec.name},
            )

    @activity.defn
    async def record_intake_change(self, change: IntakeChange) -> None:
        """Record that intake opened or closed.

        Idempotent: the state only moves forward (scheduled, open, closed) and the event key
        is `<workflow id>:intake:<state>`."""
        workflow_id = current_workflow_id()
        async with self._pool.acquire() as conn, conn.transaction():
            await programmes.set_intake(conn, change)
            await audit.append(
                conn,
                event_key=f"{workflow_id}:intake:{change.state.value}",
                workflow_id=workflow_id,
                kind=f"intake_{change.state.value}",
                at=change.at,
                programme_id=change.programme_id,
            )
