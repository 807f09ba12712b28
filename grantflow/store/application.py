"""Applications: the read model the application workflow's activities keep in step."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from grantflow.store import Db, audit
from schemas.application import (
    ApplicationContent,
    ApplicationPublic,
    ApplicationStart,
    Finding,
    StageChange,
)
from schemas.common import Stage

INSERT_APPLICATION_SQL = """
INSERT INTO applications (id, programme_id, applicant_id, institution_id, workflow_id, specialty,
                          requested_rub, content, stage, stage_seq, idempotency_key,
                          request_digest, submitted_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'screening', 1, $9, $10, $11, $11)
ON CONFLICT (id) DO NOTHING"""
# stage_seq makes a retried or late-delivered change a no-op instead of a step back.
UPDATE_STAGE_SQL = """
UPDATE applications
SET stage = $3, stage_seq = $2, action_required = $4, deadline = $5, findings = $6,
    content = COALESCE($7, content), specialty = COALESCE($8, specialty),
    requested_rub = COALESCE($9, requested_rub), updated_at = $10,
    review_score = COALESCE($11, review_score), review_spread = COALESCE($12, review_spread),
    outcome = COALESCE($13, outcome)
WHERE id = $1 AND stage_seq < $2"""
# The stage change, or the new application, with its audit event: one statement each, so one
# round trip instead of four (BEGIN, the write, the event, COMMIT).
CHANGE_STAGE_WITH_EVENT_SQL = audit.with_event(UPDATE_STAGE_SQL, 14)
INSERT_APPLICATION_WITH_EVENT_SQL = audit.with_event(INSERT_APPLICATION_SQL, 12)
GET_APPLICATION_SQL = """
SELECT id, programme_id, applicant_id, institution_id, stage, action_required, deadline,
       findings, content, reviews_submitted, review_score, review_spread, submitted_at,
       updated_at
FROM applications WHERE id = $1"""
FLAG_SQL = "SELECT flag_reason FROM applications WHERE id = $1"
# Beside a flag already there (the admin must see both), and only once.
FLAG_REFUSED_SQL = """
UPDATE applications
SET flag_reason = CASE WHEN flag_reason IS NULL THEN $2
                       WHEN strpos(flag_reason, $2) > 0 THEN flag_reason
                       ELSE flag_reason || '; ' || $2 END,
    flagged_at = COALESCE(flagged_at, $3)
WHERE id = $1"""
BY_IDEMPOTENCY_KEY_SQL = """
SELECT id, request_digest FROM applications WHERE applicant_id = $1 AND idempotency_key = $2"""
# Keyset pagination, newest first; $2/$3 is the last row of the previous page (or NULL).
LIST_APPLICATIONS_SQL = """
SELECT id, programme_id, applicant_id, institution_id, stage, action_required, deadline,
       findings, content, reviews_submitted, review_score, review_spread, submitted_at,
       updated_at
FROM applications
WHERE ($1::uuid IS NULL OR applicant_id = $1)
  AND ($4::uuid IS NULL OR programme_id = $4)
  AND ($5::text IS NULL OR stage = $5)
  AND ($2::timestamptz IS NULL OR (submitted_at, id) < ($2, $3::uuid))
ORDER BY submitted_at DESC, id DESC
LIMIT $6"""
# What `grantflow check` holds against each workflow: a programme's rows, or the rows named.
CHECK_ROWS_SQL = """
SELECT id, workflow_id, stage, stage_seq, requested_rub, approved_rub, outcome
FROM applications
WHERE ($1::uuid IS NULL OR programme_id = $1) AND ($2::uuid[] IS NULL OR id = ANY($2))
ORDER BY submitted_at, id"""


async def insert(db: Db, start: ApplicationStart, workflow_id: str) -> None:
    await db.execute(INSERT_APPLICATION_SQL, *_insert_args(start, workflow_id))


async def register(
    db: Db, start: ApplicationStart, workflow_id: str, event: tuple[Any, ...]
) -> None:
    """Put the application on record with its event (`audit.event_args`)."""
    await db.execute(INSERT_APPLICATION_WITH_EVENT_SQL, *_insert_args(start, workflow_id), *event)


def _insert_args(start: ApplicationStart, workflow_id: str) -> tuple[Any, ...]:
    c = start.content
    return (
        uuid.UUID(start.application_id),
        uuid.UUID(start.programme.programme_id),
        uuid.UUID(start.applicant.user_id),
        start.applicant.institution_id,
        workflow_id,
        c.specialty,
        c.requested_rub,
        c.model_dump_json(),
        start.idempotency_key,
        start.request_digest,
        start.submitted_at,
    )


async def change_stage(db: Db, change: StageChange, event: tuple[Any, ...]) -> None:
    """Apply a stage change unless a later one is already there, and append its event
    (`audit.event_args`) unless it is there."""
    await db.execute(CHANGE_STAGE_WITH_EVENT_SQL, *_stage_args(change), *event)


async def flag_refused(db: Db, application_id: str, reason: str, at: datetime) -> bool:
    """Put the application in the admins' flagged queue because a write about it was refused;
    False when it is not on record (its registration was the write refused)."""
    status = await db.execute(FLAG_REFUSED_SQL, uuid.UUID(application_id), reason, at)
    return bool(status == "UPDATE 1")


def _stage_args(change: StageChange) -> tuple[Any, ...]:
    c = change.content
    return (
        uuid.UUID(change.application_id),
        change.seq,
        change.stage.value,
        change.action_required,
        change.deadline,
        json.dumps([f.model_dump() for f in change.findings]),
        c.model_dump_json() if c else None,
        c.specialty if c else None,
        c.requested_rub if c else None,
        change.at,
        change.review_score,
        change.review_spread,
        change.outcome.value if change.outcome else None,
    )


async def get(conn: Db, application_id: uuid.UUID) -> ApplicationPublic | None:
    row = await conn.fetchrow(GET_APPLICATION_SQL, application_id)
    return public(row) if row else None


async def flag(db: Db, application_id: uuid.UUID) -> tuple[str | None] | None:
    """None when there is no such application; else its flag reason (None when unflagged)."""
    row = await db.fetchrow(FLAG_SQL, application_id)
    return None if row is None else (row["flag_reason"],)


async def by_idempotency_key(conn: Db, applicant_id: uuid.UUID, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(BY_IDEMPOTENCY_KEY_SQL, applicant_id, key)


async def page(
    conn: Db,
    *,
    limit: int,
    cursor: str | None,
    applicant_id: uuid.UUID | None = None,
    programme_id: uuid.UUID | None = None,
    stage: Stage | None = None,
) -> tuple[list[ApplicationPublic], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    after_at, after_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await conn.fetch(
        LIST_APPLICATIONS_SQL,
        applicant_id,
        after_at,
        after_id,
        programme_id,
        stage.value if stage else None,
        limit + 1,
    )
    items = [public(r) for r in rows[:limit]]
    more = len(rows) > limit
    return items, encode_cursor(items[-1].submitted_at, items[-1].id) if more else None


def encode_cursor(at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), row_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for a cursor this module did not make."""
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc


def public(row: asyncpg.Record) -> ApplicationPublic:
    return ApplicationPublic(
        id=str(row["id"]),
        programme_id=str(row["programme_id"]),
        applicant_id=str(row["applicant_id"]),
        institution_id=row["institution_id"],
        stage=Stage(row["stage"]),
        action_required=row["action_required"],
        deadline=row["deadline"],
        findings=[Finding.model_validate(f) for f in json.loads(row["findings"])],
        content=ApplicationContent.model_validate_json(row["content"]),
        reviews_submitted=row["reviews_submitted"],
        review_score=_float(row["review_score"]),
        review_spread=_float(row["review_spread"]),
        submitted_at=row["submitted_at"],
        updated_at=row["updated_at"],
    )


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


async def for_check(
    db: Db, programme_id: uuid.UUID | None = None, ids: list[uuid.UUID] | None = None
) -> list[asyncpg.Record]:
    """The rows `grantflow check` compares with their workflows (all, a programme's, or some)."""
    return list(await db.fetch(CHECK_ROWS_SQL, programme_id, ids))
