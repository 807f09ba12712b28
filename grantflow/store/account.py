"""People's accounts: e-mail and password, sessions, single-use links, sign-in attempts and
the accounts' audit. Secrets (session ids, link tokens) are stored only as SHA-256 hashes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from grantflow.store import Conn, Db
from grantflow.store.users import UPSERT_INSTITUTION_SQL, institution_id
from schemas.common import OrganisationType, Role

# A deactivated account is no one to sign in, or to send a reset link to.
BY_EMAIL_SQL = """
SELECT u.id, u.name, u.role, u.email, u.password_hash, u.email_confirmed_at, u.locale, u.time_zone,
       u.institution_id, i.name AS institution_name, i.organisation_type
FROM users u LEFT JOIN institutions i ON i.id = u.institution_id
WHERE lower(u.email) = lower($1) AND u.deactivated_at IS NULL"""
BY_ID_SQL = """
SELECT u.id, u.name, u.role, u.email, u.password_hash, u.email_confirmed_at, u.locale, u.time_zone,
       u.institution_id, i.name AS institution_name, i.organisation_type
FROM users u LEFT JOIN institutions i ON i.id = u.institution_id
WHERE u.id = $1"""
INSERT_APPLICANT_SQL = """
INSERT INTO users (id, name, role, institution_id, email, password_hash, locale, time_zone)
VALUES ($1, $2, 'applicant', $3, $4, $5, $6, $7)"""
SET_EMAIL_SQL = "UPDATE users SET email = $2 WHERE id = $1"
SET_PASSWORD_SQL = "UPDATE users SET password_hash = $2 WHERE id = $1"  # noqa: S105
CONFIRM_EMAIL_SQL = """
UPDATE users SET email_confirmed_at = coalesce(email_confirmed_at, now()) WHERE id = $1"""
SET_PREFERENCES_SQL = """
UPDATE users SET locale = coalesce($2, locale), time_zone = coalesce($3, time_zone)
WHERE id = $1"""

ADD_LINK_SQL = """
INSERT INTO account_links (token_hash, user_id, purpose, expires_at) VALUES ($1, $2, $3, $4)"""
# One statement: of two clicks on the same link, exactly one finds it unused.
USE_LINK_SQL = """
UPDATE account_links SET used_at = now()
WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
RETURNING user_id"""
LINK_LIVE_SQL = """
SELECT true FROM account_links
WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()"""
# A new link of a purpose retires the user's older ones: only the latest e-mail works.
RETIRE_LINKS_SQL = """
UPDATE account_links SET used_at = now()
WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL"""

ADD_SESSION_SQL = """
INSERT INTO sessions (id_hash, user_id, expires_at, client_addr, user_agent)
VALUES ($1, $2, $3, $4, $5)"""
# The session's user if it is live (not revoked, before its absolute end, seen within the idle
# timeout), and the session marked seen now, in one round trip.
SESSION_USER_SQL = """
WITH s AS (
    UPDATE sessions SET last_seen_at = now()
    WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now()
      AND last_seen_at > now() - $2::interval
    RETURNING user_id
)
SELECT u.id, u.name, u.role, u.email, u.password_hash, u.email_confirmed_at, u.locale, u.time_zone,
       u.institution_id, i.name AS institution_name, i.organisation_type
FROM s JOIN users u ON u.id = s.user_id LEFT JOIN institutions i ON i.id = u.institution_id
WHERE u.deactivated_at IS NULL"""
REVOKE_SESSION_SQL = """
UPDATE sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL"""
REVOKE_ALL_SQL = """
UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"""
LIVE_SESSIONS_SQL = """
SELECT count(*) FROM sessions
WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()"""

ADD_ATTEMPT_SQL = """
INSERT INTO sign_in_attempts (email, client_addr, succeeded) VALUES ($1, $2, $3)"""
# When the `$3`-th most recent failure leaves the window: until then the account is throttled.
# Failures before the account's last success do not count against it.
ACCOUNT_LOCKED_UNTIL_SQL = """
SELECT at + $2::interval FROM sign_in_attempts a
WHERE lower(email) = lower($1) AND NOT succeeded AND at > now() - $2::interval
  AND at > coalesce(
      (SELECT max(at) FROM sign_in_attempts
       WHERE lower(email) = lower($1) AND succeeded), '-infinity')
ORDER BY at DESC OFFSET $3 - 1 LIMIT 1"""
ADDRESS_LOCKED_UNTIL_SQL = """
SELECT at + $2::interval FROM sign_in_attempts
WHERE client_addr = $1 AND NOT succeeded AND at > now() - $2::interval
ORDER BY at DESC OFFSET $3 - 1 LIMIT 1"""

ADD_EVENT_SQL = """
INSERT INTO account_events (user_id, kind, email, client_addr, detail)
VALUES ($1, $2, $3, $4, $5::jsonb)"""
EVENTS_SQL = """
SELECT kind, email, client_addr, detail, at FROM account_events
WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR lower(email) = lower($2))
ORDER BY id"""


@dataclass(frozen=True)
class Account:
    """A person's account as the pages need it."""

    id: uuid.UUID
    name: str
    role: Role
    email: str | None
    password_hash: str | None
    email_confirmed: bool
    locale: str
    time_zone: str
    institution_id: str | None
    institution_name: str | None
    organisation_type: OrganisationType | None


def _account(row: asyncpg.Record | None) -> Account | None:
    if row is None:
        return None
    org = row["organisation_type"]
    return Account(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        email=row["email"],
        password_hash=row["password_hash"],
        email_confirmed=row["email_confirmed_at"] is not None,
        locale=row["locale"],
        time_zone=row["time_zone"],
        institution_id=row["institution_id"],
        institution_name=row["institution_name"],
        organisation_type=OrganisationType(org) if org else None,
    )


async def by_email(db: Db, email: str) -> Account | None:
    return _account(await db.fetchrow(BY_EMAIL_SQL, email))


async def by_id(db: Db, user_id: uuid.UUID) -> Account | None:
    return _account(await db.fetchrow(BY_ID_SQL, user_id))


async def create_applicant(
    conn: Conn,
    *,
    name: str,
    email: str,
    institution: str,
    organisation_type: OrganisationType,
    password_hash: str,
    locale: str,
    time_zone: str,
) -> uuid.UUID:
    """A self-registered applicant (no bearer token); the e-mail's uniqueness is the index's."""
    user_id = uuid.uuid4()
    inst = institution_id(institution)
    async with conn.transaction():
        await conn.execute(UPSERT_INSTITUTION_SQL, inst, institution, organisation_type.value)
        await conn.execute(
            INSERT_APPLICANT_SQL, user_id, name, inst, email, password_hash, locale, time_zone
        )
    return user_id


async def set_email(db: Db, user_id: uuid.UUID, email: str) -> None:
    await db.execute(SET_EMAIL_SQL, user_id, email)


async def set_password(db: Db, user_id: uuid.UUID, password_hash: str) -> None:
    await db.execute(SET_PASSWORD_SQL, user_id, password_hash)


async def confirm_email(db: Db, user_id: uuid.UUID) -> None:
    await db.execute(CONFIRM_EMAIL_SQL, user_id)


async def set_preferences(
    db: Db, user_id: uuid.UUID, *, locale: str | None = None, time_zone: str | None = None
) -> None:
    await db.execute(SET_PREFERENCES_SQL, user_id, locale, time_zone)


async def add_link(
    conn: Conn, token_hash: bytes, user_id: uuid.UUID, purpose: str, expires_at: datetime
) -> None:
    """A new link for `purpose`; the user's earlier links for it stop working."""
    await conn.execute(RETIRE_LINKS_SQL, user_id, purpose)
    await conn.execute(ADD_LINK_SQL, token_hash, user_id, purpose, expires_at)


async def use_link(db: Db, token_hash: bytes, purpose: str) -> uuid.UUID | None:
    """The link's user, once: None for an unknown, used or expired link."""
    found: uuid.UUID | None = await db.fetchval(USE_LINK_SQL, token_hash, purpose)
    return found


async def link_live(db: Db, token_hash: bytes, purpose: str) -> bool:
    """Whether the link still works (it stays unused)."""
    return bool(await db.fetchval(LINK_LIVE_SQL, token_hash, purpose))


async def add_session(
    db: Db,
    id_hash: bytes,
    user_id: uuid.UUID,
    expires_at: datetime,
    client_addr: str | None,
    user_agent: str | None,
) -> None:
    await db.execute(ADD_SESSION_SQL, id_hash, user_id, expires_at, client_addr, user_agent)


async def session_account(db: Db, id_hash: bytes, idle: timedelta) -> Account | None:
    return _account(await db.fetchrow(SESSION_USER_SQL, id_hash, idle))


async def revoke_session(db: Db, id_hash: bytes) -> None:
    await db.execute(REVOKE_SESSION_SQL, id_hash)


async def revoke_all(db: Db, user_id: uuid.UUID) -> int:
    """End every live session of the user; returns how many there were."""
    status: str = await db.execute(REVOKE_ALL_SQL, user_id)
    return int(status.split()[-1])


async def live_sessions(db: Db, user_id: uuid.UUID) -> int:
    return int(await db.fetchval(LIVE_SESSIONS_SQL, user_id))


async def add_attempt(db: Db, email: str, client_addr: str, succeeded: bool) -> None:
    await db.execute(ADD_ATTEMPT_SQL, email, client_addr, succeeded)


async def locked_until(
    db: Db, email: str, client_addr: str, window: timedelta, per_account: int, per_address: int
) -> datetime | None:
    """Until when sign-in is throttled for this account or this address, or None."""
    account = await db.fetchval(ACCOUNT_LOCKED_UNTIL_SQL, email, window, per_account)
    address = await db.fetchval(ADDRESS_LOCKED_UNTIL_SQL, client_addr, window, per_address)
    found = [t for t in (account, address) if t is not None]
    return max(found) if found else None


async def add_event(
    db: Db,
    kind: str,
    *,
    user_id: uuid.UUID | None = None,
    email: str | None = None,
    client_addr: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await db.execute(ADD_EVENT_SQL, user_id, kind, email, client_addr, json.dumps(detail or {}))


async def events(
    db: Db, *, user_id: uuid.UUID | None = None, email: str | None = None
) -> list[asyncpg.Record]:
    """The accounts' audit, oldest first, for a user or an e-mail address."""
    return list(await db.fetch(EVENTS_SQL, user_id, email))
