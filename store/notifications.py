"""The notification outbox: rows written with the change they announce, delivered once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from grantflow.notify import Recipient, Sender
from schemas.notifications import NewNotification, NotificationKind, NotificationPublic
from store import Conn, Db

ADD_SQL = """
INSERT INTO notifications (key, user_id, kind, subject, body, application_id, task_id,
                           created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (key) DO NOTHING"""
# SKIP LOCKED: a notification another worker is sending right now is theirs to finish.
CLAIM_SQL = """
SELECT n.id, n.kind, n.subject, n.body, n.application_id, n.task_id, n.created_at,
       n.delivered_at, u.id AS user_id, u.name, u.email
FROM notifications n JOIN users u ON u.id = n.user_id
WHERE n.key = $1 AND n.delivered_at IS NULL
FOR UPDATE OF n SKIP LOCKED"""
MARK_DELIVERED_SQL = """
UPDATE notifications SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = $1"""
MARK_FAILED_SQL = """
UPDATE notifications SET attempts = attempts + 1, last_error = $2 WHERE id = $1"""
PENDING_SQL = "SELECT key FROM notifications WHERE delivered_at IS NULL ORDER BY id LIMIT $1"
PAGE_SQL = """
SELECT id, kind, subject, body, application_id, task_id, created_at, delivered_at
FROM notifications
WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3"""


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def add(conn: Conn, items: Sequence[NewNotification]) -> None:
    """Put notifications in the outbox; a key already there adds nothing."""
    if not items:
        return
    await conn.executemany(
        ADD_SQL,
        [
            (
                n.key,
                uuid.UUID(n.user_id),
                n.kind.value,
                n.subject,
                n.body,
                _uuid(n.application_id),
                _uuid(n.task_id),
                n.created_at,
            )
            for n in items
        ],
    )


def _public(row: asyncpg.Record) -> NotificationPublic:
    return NotificationPublic(
        id=row["id"],
        kind=NotificationKind(row["kind"]),
        subject=row["subject"],
        body=row["body"],
        application_id=str(row["application_id"]) if row["application_id"] else None,
        task_id=str(row["task_id"]) if row["task_id"] else None,
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


async def deliver(pool: asyncpg.Pool, keys: Sequence[str], sender: Sender) -> int:
    """Send every notification among `keys` not sent yet; returns how many were sent now.

    Each row is locked, sent and marked delivered in one transaction, so a second call (a
    retried activity, another worker) finds it delivered or locked and skips it. A send that
    fails is counted on the row and raised after the others had their turn, so that the
    calling activity retries it."""
    sent, failure = 0, None
    for key in keys:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(CLAIM_SQL, key)
            if row is None:
                continue
            try:
                await sender.send(
                    _public(row), Recipient(str(row["user_id"]), row["name"], row["email"])
                )
            except Exception as exc:
                # Recorded under the row's lock: another delivery cannot send it in between
                # and then have this failure written over its success.
                failure = exc
                await conn.execute(MARK_FAILED_SQL, row["id"], f"{type(exc).__name__}: {exc}")
            else:
                await conn.execute(MARK_DELIVERED_SQL, row["id"])
                sent += 1
    if failure is not None:
        raise failure
    return sent


async def deliver_pending(pool: asyncpg.Pool, sender: Sender, limit: int = 100) -> int:
    """Send what is still undelivered (after an outage of the mail relay, for instance)."""
    keys = [r["key"] for r in await pool.fetch(PENDING_SQL, limit)]
    return await deliver(pool, keys, sender)


async def page(
    db: Db, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[NotificationPublic], str | None]:
    """A user's notifications, newest first; the cursor is the last id of the page."""
    try:
        before = int(cursor) if cursor else None
    except ValueError:
        raise ValueError("invalid cursor") from None
    if before is not None and not 0 < before < 2**63:  # an id is a positive bigint
        raise ValueError("invalid cursor")
    rows = await db.fetch(PAGE_SQL, user_id, before, limit + 1)
    items = [_public(r) for r in rows[:limit]]
    return items, str(items[-1].id) if len(rows) > limit else None
