"""The append-only audit trail: who did what, when, in which workflow."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from grantflow.store import Conn, Db
from schemas.common import Actor

INSERT_EVENT_SQL = """
INSERT INTO audit_events (event_key, application_id, programme_id, workflow_id, kind, stage,
                          actor_id, actor_role, reason, detail, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (event_key) DO NOTHING"""
EVENT_VALUES = "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
EVENT_PARAMS = 11
# The timeline (services/application.py) and an admin's history (services/history.py):
# with the acting user's id and the workflow that recorded it.
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
        *event_args(
            event_key=event_key,
            workflow_id=workflow_id,
            kind=kind,
            at=at,
            application_id=application_id,
            programme_id=programme_id,
            stage=stage,
            actor=actor,
            reason=reason,
            detail=detail,
        ),
    )


async def insert(conn: Conn, event: tuple[Any, ...]) -> None:
    """Append one event given as `event_args` gives it; a second call writes nothing."""
    await conn.execute(INSERT_EVENT_SQL, *event)


def event_args(
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
) -> tuple[Any, ...]:
    """The parameters of INSERT_EVENT_SQL, in order (also those `with_event` appends)."""
    return (
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


def with_event(change_sql: str, first: int) -> str:
    """`change_sql` (a data-modifying statement with parameters $1 to $first-1) and the insert of
    its audit event (parameters from $first on, as `event_args` gives them) as one statement:
    one round trip, atomic without BEGIN and COMMIT. PostgreSQL runs a data-modifying WITH
    whether or not the main statement reads it."""
    assert EVENT_VALUES in INSERT_EVENT_SQL
    values = ", ".join(f"${first + i}" for i in range(EVENT_PARAMS))
    return f"WITH change AS ({change_sql})\n" + INSERT_EVENT_SQL.replace(
        EVENT_VALUES, f"VALUES ({values})"
    )


async def history(conn: Db, application_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every audit event of the application, oldest first, with the actor's id and name."""
    return await conn.fetch(APPLICATION_HISTORY_SQL, application_id)


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None
