"""The notification outbox: rows written with the change they announce, delivered once."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from grantflow.notify import Recipient, Sender
from grantflow.store import Conn, Db, in_transaction
from schemas.notifications import NewNotification, NotificationKind, NotificationPublic

ADD_SQL = """
INSERT INTO notifications (key, user_id, kind, subject, body, application_id, task_id,
                           created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (key) DO NOTHING"""
# Every notification among the keys not sent yet, locked for this delivery; SKIP LOCKED: those
# another delivery holds right now are theirs to finish.
CLAIM_SQL = """
SELECT n.id, n.kind, n.subject, n.body, n.application_id, n.task_id, n.created_at,
       n.delivered_at, u.id AS user_id, u.name, u.email
FROM notifications n JOIN users u ON u.id = n.user_id
WHERE n.key = ANY($1::text[]) AND n.delivered_at IS NULL
ORDER BY n.id
FOR UPDATE OF n SKIP LOCKED"""
# What each send did, in one statement: a NULL error marks it delivered; an error is counted on
# the row and kept, and the row stays pending.
MARK_SQL = """
UPDATE notifications n
SET delivered_at = CASE WHEN s.error IS NULL THEN now() END,
    attempts = n.attempts + 1,
    last_error = s.error
FROM unnest($1::bigint[], $2::text[]) AS s (id, error)
WHERE n.id = s.id"""
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


@dataclass
class _Delivery:
    sent: int = 0
    failure: Exception | None = None
    interrupted: BaseException | None = None


async def deliver(pool: asyncpg.Pool, keys: Sequence[str], sender: Sender) -> int:
    """Send every notification among `keys` not sent yet; returns how many were sent now.

    In one transaction: one statement locks the unsent ones, they are sent one by one, and one
    statement records each outcome before the locks go. So a second call (a retried activity,
    another worker) finds each delivered or locked and skips it. A send that fails is counted on
    its row and raised after the others had their turn, so that the calling activity retries
    it. Interrupted mid-way (the activity cancelled or timed out), the outcomes so far are still
    recorded: what went out is not sent again. Delivery is at least once: should PostgreSQL
    abort the transaction after sends (a serialisation failure at its end), it runs again and
    sends those again, as a retried activity would."""
    if not keys:
        return 0
    done = await in_transaction(pool, functools.partial(_send, list(keys), sender))
    if done.interrupted is not None:
        raise done.interrupted
    if done.failure is not None:
        raise done.failure
    return done.sent


async def _send(keys: list[str], sender: Sender, conn: Conn) -> _Delivery:
    done = _Delivery()
    rows = await conn.fetch(CLAIM_SQL, keys)
    ids: list[int] = []
    errors: list[str | None] = []
    try:
        for row in rows:
            recipient = Recipient(str(row["user_id"]), row["name"], row["email"])
            try:
                await sender.send(_public(row), recipient)
            except Exception as exc:
                done.failure = exc
                ids.append(row["id"])
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                ids.append(row["id"])
                errors.append(None)
                done.sent += 1
    except BaseException as exc:  # cancelled mid-way: record what went out, then stop
        done.interrupted = exc
    # Recorded under the rows' locks: another delivery cannot send one in between and then
    # have a failure written here over its success.
    if ids:
        await conn.execute(MARK_SQL, ids, errors)
    return done


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


async def copies(
    template: NewNotification | None, users: Callable[[], Awaitable[list[str]]]
) -> list[NewNotification]:
    """One copy of `template` per user; the users are looked up only when there is one (most
    changes notify nobody, and the lookup is a round trip)."""
    if template is None:
        return []
    return [
        template.model_copy(update={"user_id": user, "key": f"{template.key}:{user}"})
        for user in await users()
    ]
