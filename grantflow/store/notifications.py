"""The notification outbox: rows written with the change they announce (each once), and sent
at least once: claimed, sent outside any transaction, then marked sent."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import asyncpg

from grantflow.notify import Recipient, Sender
from grantflow.store import Conn, Db
from schemas.notifications import NewNotification, NotificationKind, NotificationPublic

ADD_SQL = """
INSERT INTO notifications (key, user_id, kind, subject, body, application_id, task_id,
                           created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (key) DO NOTHING"""
# How long a claim keeps other deliveries off a notification: longer than a send can take
# (the SMTP sender's timeout is 20 s a step). An older claim is a delivery that died between
# its send and its record: the next delivery sends the notification again.
CLAIM_LEASE = timedelta(seconds=60)
# Claims the unsent notifications among the keys that no live delivery holds, in one statement
# that commits at once: their rows are locked only while it runs, never during a send. A
# concurrent claim of the same rows waits for it, then finds them claimed and leaves them.
# The claim's time (the statement's now()) tells this delivery's claims from a later one's.
CLAIM_SQL = """
UPDATE notifications n
SET claimed_at = now()
FROM users u
WHERE u.id = n.user_id AND n.key = ANY($1::text[]) AND n.delivered_at IS NULL
  AND (n.claimed_at IS NULL OR n.claimed_at < now() - $2::interval)
RETURNING n.id, n.kind, n.subject, n.body, n.application_id, n.task_id, n.created_at,
          n.delivered_at, n.claimed_at, u.id AS user_id, u.name, u.email"""
# One send's outcome: a NULL error marks it delivered; an error is counted on the row, which
# stays pending. A failure never unmarks a send another delivery made (after this one's claim
# expired), and only this delivery's own claim is released.
MARK_SQL = """
UPDATE notifications
SET delivered_at = CASE WHEN $3::text IS NULL THEN coalesce(delivered_at, now())
                        ELSE delivered_at END,
    attempts = attempts + 1,
    last_error = CASE WHEN delivered_at IS NULL OR $3::text IS NULL THEN $3 ELSE last_error END,
    claimed_at = CASE WHEN claimed_at = $2 THEN NULL ELSE claimed_at END
WHERE id = $1"""
RELEASE_SQL = """
UPDATE notifications SET claimed_at = NULL WHERE id = ANY($1::bigint[]) AND claimed_at = $2"""
UNSENT_SQL = """
SELECT count(*) FROM notifications WHERE key = ANY($1::text[]) AND delivered_at IS NULL"""
PENDING_SQL = """
SELECT key FROM notifications
WHERE delivered_at IS NULL AND (claimed_at IS NULL OR claimed_at < now() - $2::interval)
ORDER BY id
LIMIT $1"""
PAGE_SQL = """
SELECT id, kind, subject, body, application_id, task_id, created_at, delivered_at
FROM notifications
WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2) AND kind <> ALL($4::text[])
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


class StillSending(Exception):
    """Some notifications are not sent yet because another delivery holds them (or held them
    and died: its claim lasts `CLAIM_LEASE`). Raised so that the calling activity is retried
    and comes back for them: a notification is never left unsent."""


async def deliver(
    pool: asyncpg.Pool, keys: Sequence[str], sender: Sender, *, lease: timedelta = CLAIM_LEASE
) -> int:
    """Send every notification among `keys` not sent yet; returns how many were sent now.

    At least once, never under a lock: the unsent ones are claimed (committed), sent one by
    one outside any transaction, and each is marked sent (or its error counted) right after
    its send. A delivery that dies between a send and its mark leaves its claim; once the
    claim is older than `lease`, the next delivery sends that notification again, with the
    same Message-ID (the notification's id), so mail clients show it once. Cancelled mid-way,
    it releases its unfinished claims first, so a retry sends them without waiting.

    A send that fails is counted on its row and raised after the others had their turn, so
    that the calling activity retries it; notifications another delivery holds raise
    `StillSending`, for the same reason."""
    unique = sorted(set(keys))
    sent, failure, claimed = await _deliver(pool, unique, sender, lease)
    if failure is not None:
        raise failure
    if claimed < len(unique) and (unsent := await pool.fetchval(UNSENT_SQL, unique)):
        raise StillSending(f"{unsent} notification(s) not sent yet: another delivery holds them")
    return sent


async def _deliver(
    pool: asyncpg.Pool, keys: list[str], sender: Sender, lease: timedelta
) -> tuple[int, Exception | None, int]:
    """Claim and send; returns how many were sent, the last failure, how many were claimed."""
    if not keys:
        return 0, None, 0
    rows = sorted(await pool.fetch(CLAIM_SQL, keys, lease), key=lambda r: int(r["id"]))
    sent, failure = 0, None
    for done, row in enumerate(rows):
        claim: datetime = row["claimed_at"]
        try:
            exc = await _send_one(sender, row)
            error = None if exc is None else f"{type(exc).__name__}: {exc}"
            await pool.execute(MARK_SQL, row["id"], claim, error)
        except BaseException:
            # Cancelled (or the process is going): this one may have gone out, the rest have
            # not. Let the next delivery take them now rather than after the lease.
            await _release(pool, [r["id"] for r in rows[done:]], claim)
            raise
        if exc is None:
            sent += 1
        else:
            failure = exc
    return sent, failure, len(rows)


async def _send_one(sender: Sender, row: asyncpg.Record) -> Exception | None:
    recipient = Recipient(str(row["user_id"]), row["name"], row["email"])
    try:
        await sender.send(_public(row), recipient)
    except Exception as exc:
        return exc
    return None


async def _release(pool: asyncpg.Pool, ids: list[int], claim: datetime) -> None:
    # Should the release fail too, the claims end with their lease: sent late, never lost.
    with contextlib.suppress(Exception):
        await pool.execute(RELEASE_SQL, ids, claim)


async def deliver_pending(
    pool: asyncpg.Pool, sender: Sender, limit: int = 100, *, lease: timedelta = CLAIM_LEASE
) -> int:
    """Send what is still undelivered (after an outage of the mail relay, or what a delivery
    that died left claimed past its lease); what a live delivery holds is left to it."""
    keys = [r["key"] for r in await pool.fetch(PENDING_SQL, limit, lease)]
    sent, failure, _ = await _deliver(pool, keys, sender, lease)
    if failure is not None:
        raise failure
    return sent


async def page(
    db: Db,
    user_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    hidden: Sequence[NotificationKind] = (),
) -> tuple[list[NotificationPublic], str | None]:
    """A user's notifications, newest first, but for the `hidden` kinds; the cursor is the
    last id of the page."""
    try:
        before = int(cursor) if cursor else None
    except ValueError:
        raise ValueError("invalid cursor") from None
    if before is not None and not 0 < before < 2**63:  # an id is a positive bigint
        raise ValueError("invalid cursor")
    rows = await db.fetch(PAGE_SQL, user_id, before, limit + 1, [k.value for k in hidden])
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
