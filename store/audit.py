"""The append-only audit trail: who did what, when, in which workflow."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from schemas.common import Actor
from store import Conn, Db

INSERT_EVENT_SQL = """
INSERT INTO audit_events (event_key, application_id, programme_id, workflow_id, kind, stage,
                          actor_id, actor_role, reason, detail, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (event_key) DO NOTHING"""
APPLICATION_EVENTS_SQL = """
SELECT e.at, e.kind, e.stage, e.actor_role, u.name AS actor_name, e.reason, e.detail
FROM audit_events e LEFT JOIN users u ON u.id = e.actor_id
WHERE e.application_id = $1
ORDER BY e.at, e.id"""
# An admin's view (grantflow/history.py): with the acting user's id and the workflow.
APPLICATION_HISTORY_SQL = """
SELECT e.at, e.kind, e.stage, e.workflow_id, e.actor_id, e.actor_role, u.name AS actor_name,
       e.reason, e.detail
FROM audit_events e LEFT JOIN users u ON u.id = e.actor_id
WHERE e.application_id = $1
ORDER BY e.at, e.id"""


async def append(
    conn: Conn,
    *,
    event_key: str,
    workflow_id: str,
    kind: str,
    at: datetime,
    application_id: str | None = None,
    programme_id: str | None = None,
    stage: str | None = None,
    actor: Actor | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event; a second call with the same `event_key` writes nothing."""
    await conn.execute(
        INSERT_EVENT_SQL,
        event_key,
        _uuid(application_id),
        _uuid(programme_id),
        workflow_id,
        kind,
        stage,
        _uuid(actor.user_id if actor else None),
        actor.role.value if actor else None,
        reason,
        json.dumps(detail or {}),
        at,
    )


async def for_application(conn: Db, application_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(APPLICATION_EVENTS_SQL, application_id)


async def history(conn: Db, application_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every audit event of the application, oldest first, with the actor's id and name."""
    return await conn.fetch(APPLICATION_HISTORY_SQL, application_id)


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None
