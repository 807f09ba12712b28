"""Writes of the application workflow: the application row and its audit events."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from activities import refuses_bad_data
from activities import workflow_id as current_workflow_id
from grantflow.store import application, audit, in_transaction
from schemas.application import ApplicationStart, StageChange

log = structlog.get_logger(__name__)


class ApplicationActivities:
    """Bound to the worker's connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    @refuses_bad_data
    async def register_application(self, start: ApplicationStart) -> None:
        """Put a new application on record (stage `screening`) with its `submitted` event.

        Idempotent: the row's primary key is the application id and the event's key is
        `<workflow id>:1`, both inserted with ON CONFLICT DO NOTHING in one statement."""
        workflow_id = current_workflow_id()
        event = audit.event_args(
            event_key=f"{workflow_id}:1",
            workflow_id=workflow_id,
            kind="submitted",
            at=start.submitted_at,
            application_id=start.application_id,
            programme_id=start.programme.programme_id,
            stage="screening",
            actor=start.applicant,
        )
        await in_transaction(
            self._pool,
            lambda conn: application.register(conn, start, workflow_id, event),
            single_statement=True,
        )
        log.info(
            "application registered", application_id=start.application_id, workflow_id=workflow_id
        )

    @activity.defn
    @refuses_bad_data
    async def record_stage_change(self, change: StageChange) -> None:
        """Move the application's row to the new stage and append the audit event.

        Idempotent: the event's key is `<workflow id>:<seq>` (ON CONFLICT DO NOTHING), and the
        row only moves when its `stage_seq` is below `seq`, so a retry changes nothing."""
        event = audit.event_args(
            event_key=f"{change.workflow_id}:{change.seq}",
            workflow_id=change.workflow_id,
            kind=change.kind,
            at=change.at,
            application_id=change.application_id,
            stage=change.stage.value,
            actor=change.actor,
            reason=change.reason,
            detail=_detail(change),
        )
        await in_transaction(
            self._pool,
            lambda conn: application.change_stage(conn, change, event),
            single_statement=True,
        )
        log.info(
            "stage changed",
            application_id=change.application_id,
            workflow_id=change.workflow_id,
            stage=change.stage.value,
            kind=change.kind,
        )


def _detail(change: StageChange) -> dict[str, object]:
    detail: dict[str, object] = {}
    if change.findings:
        detail["findings"] = [f.model_dump() for f in change.findings]
    if change.deadline:
        detail["deadline"] = change.deadline.isoformat()
    return detail
