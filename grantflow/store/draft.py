"""Drafts of applications: what an applicant's form holds, saved as it is typed."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from grantflow.store import Db

INSERT_SQL = """
INSERT INTO drafts (id, applicant_id, programme_id, content) VALUES ($1, $2, $3, $4::jsonb)"""
GET_SQL = """
SELECT id, applicant_id, programme_id, content, created_at, updated_at, application_id
FROM drafts WHERE id = $1"""
# A submitted draft is kept (its id is the submission's idempotency key) but no longer edited.
SAVE_SQL = """
UPDATE drafts SET content = $3::jsonb, updated_at = now()
WHERE id = $1 AND applicant_id = $2 AND application_id IS NULL"""
MARK_SUBMITTED_SQL = "UPDATE drafts SET application_id = $2, updated_at = now() WHERE id = $1"
DELETE_SQL = "DELETE FROM drafts WHERE id = $1 AND applicant_id = $2 AND application_id IS NULL"
OPEN_SQL = """
SELECT id, applicant_id, programme_id, content, created_at, updated_at, application_id
FROM drafts WHERE applicant_id = $1 AND application_id IS NULL
ORDER BY updated_at DESC LIMIT $2"""


@dataclass(frozen=True)
class Draft:
    id: uuid.UUID
    applicant_id: uuid.UUID
    programme_id: uuid.UUID
    content: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    application_id: uuid.UUID | None


def _draft(row: asyncpg.Record | None) -> Draft | None:
    if row is None:
        return None
    return Draft(
        id=row["id"],
        applicant_id=row["applicant_id"],
        programme_id=row["programme_id"],
        content=json.loads(row["content"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        application_id=row["application_id"],
    )


async def create(
    db: Db, applicant_id: uuid.UUID, programme_id: uuid.UUID, content: dict[str, Any]
) -> uuid.UUID:
    draft_id = uuid.uuid4()
    await db.execute(INSERT_SQL, draft_id, applicant_id, programme_id, json.dumps(content))
    return draft_id


async def get(db: Db, draft_id: uuid.UUID) -> Draft | None:
    return _draft(await db.fetchrow(GET_SQL, draft_id))


async def save(
    db: Db, draft_id: uuid.UUID, applicant_id: uuid.UUID, content: dict[str, Any]
) -> bool:
    """Replace the draft's content; False when it is not (or no longer) editable."""
    status: str = await db.execute(SAVE_SQL, draft_id, applicant_id, json.dumps(content))
    return status.endswith(" 1")


async def mark_submitted(db: Db, draft_id: uuid.UUID, application_id: uuid.UUID) -> None:
    await db.execute(MARK_SUBMITTED_SQL, draft_id, application_id)


async def delete(db: Db, draft_id: uuid.UUID, applicant_id: uuid.UUID) -> bool:
    status: str = await db.execute(DELETE_SQL, draft_id, applicant_id)
    return status.endswith(" 1")


async def open_drafts(db: Db, applicant_id: uuid.UUID, limit: int = 50) -> list[Draft]:
    return [d for r in await db.fetch(OPEN_SQL, applicant_id, limit) if (d := _draft(r))]
