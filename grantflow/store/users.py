"""Users, institutions and bearer tokens (stored only as SHA-256 hashes, each with an expiry,
revocable, rotated by replacing it, and a last-used time written at most once a minute)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from grantflow.store import Conn, Db, in_transaction
from schemas.common import Actor, OrganisationType, Role
from schemas.users import TokenStatus, UserCreate, UserListed, UserPublic, UserWithToken

TOKEN_PREFIX = "gf_"  # noqa: S105 - a prefix, not a secret

UPSERT_INSTITUTION_SQL = """
INSERT INTO institutions (id, name, organisation_type) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING"""
INSERT_USER_SQL = """
INSERT INTO users (id, name, role, institution_id, specialty, token_hash, token_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7))
RETURNING id, name, role, institution_id, specialty, created_at, token_expires_at"""
# `expired` and `stale` by the database's clock, the one that set the expiry.
USER_BY_HASH_SQL = """
SELECT u.id, u.name, u.role, u.institution_id, u.specialty, u.token_hash,
       i.organisation_type, u.token_expires_at, u.token_revoked_at, u.deactivated_at,
       u.token_expires_at <= now() AS expired,
       u.token_last_used_at IS NULL
           OR u.token_last_used_at < now() - interval '1 minute' AS stale
FROM users u LEFT JOIN institutions i ON i.id = u.institution_id
WHERE u.token_hash = $1"""
# The condition again: of two requests racing past a stale time, one writes.
LAST_USED_SQL = """
UPDATE users SET token_last_used_at = now()
WHERE id = $1
  AND (token_last_used_at IS NULL OR token_last_used_at < now() - interval '1 minute')"""
REVOKE_SQL = """
UPDATE users SET token_revoked_at = coalesce(token_revoked_at, now())
WHERE id = $1
RETURNING id, token_expires_at, token_revoked_at, token_last_used_at"""
ROTATE_SQL = """
UPDATE users
SET token_hash = $2, token_expires_at = now() + make_interval(days => $3),
    token_revoked_at = NULL, token_last_used_at = NULL
WHERE id = $1
RETURNING id, name, role, institution_id, specialty, created_at, token_expires_at"""
LIFE_SQL = """
SELECT id, token_expires_at, token_revoked_at, token_last_used_at FROM users WHERE id = $1"""
COUNT_USERS_SQL = "SELECT count(*) FROM users"
ORGANISATION_TYPE_SQL = "SELECT organisation_type FROM institutions WHERE id = $1"


def institution_id(name: str) -> str:
    """A stable slug, so `--institution "City Clinic 5"` names the same institution twice."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_user(conn: Conn, new: UserCreate) -> UserWithToken:
    """Insert a user and return it with its token, which is never stored or shown again."""
    if new.role in (Role.applicant, Role.reviewer, Role.coordinator) and not new.institution:
        # A coordinator's institution is its clinic: it sees that clinic's pilot sites only.
        raise ValueError(f"a {new.role} needs an institution")
    if new.role == Role.reviewer and not new.specialty:
        raise ValueError("a reviewer needs a specialty")
    token = new_token()
    inst = institution_id(new.institution) if new.institution else None
    if new.institution and not inst:  # "!!!" has no slug: it would name no institution
        raise ValueError("an institution's name needs at least one letter or digit")
    org = new.organisation_type or OrganisationType.medical_institution

    async def insert(c: Conn) -> asyncpg.Record | None:
        if new.institution and inst:
            await c.execute(UPSERT_INSTITUTION_SQL, inst, new.institution, org.value)
        return await c.fetchrow(
            INSERT_USER_SQL,
            uuid.uuid4(),
            new.name,
            new.role.value,
            inst,
            new.specialty,
            hash_token(token),
            new.token_expires_in_days,
        )

    row = await in_transaction(conn, insert)
    assert row is not None
    return with_token(row, token)


def with_token(row: asyncpg.Record, token: str) -> UserWithToken:
    return UserWithToken(
        user=user_public(row), token=token, token_expires_at=row["token_expires_at"]
    )


def user_public(row: asyncpg.Record) -> UserPublic:
    return UserPublic(
        id=str(row["id"]),
        name=row["name"],
        role=Role(row["role"]),
        institution_id=row["institution_id"],
        specialty=row["specialty"],
        created_at=row["created_at"],
    )


@dataclass(frozen=True)
class TokenOwner:
    """The user a bearer token belongs to; `refusal` says why the token no longer works."""

    actor: Actor
    organisation_type: str | None
    refusal: str | None


async def token_owner(db: Db, token: str) -> TokenOwner | None:
    """The user behind a bearer token (None: no such token). A token in use has its last-used
    time written, at most once a minute, so that a busy client costs no write per request."""
    digest = hash_token(token)
    row = await db.fetchrow(USER_BY_HASH_SQL, digest)
    # The index lookup already matched; compare_digest keeps the final check constant-time.
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
        return None
    actor = Actor(
        user_id=str(row["id"]),
        role=Role(row["role"]),
        name=row["name"],
        institution_id=row["institution_id"],
    )
    refusal = _refusal(row)
    if refusal is None and row["stale"]:
        await db.execute(LAST_USED_SQL, row["id"])
    return TokenOwner(actor, row["organisation_type"], refusal)


def _refusal(row: asyncpg.Record) -> str | None:
    # First: a token rotated after the deactivation must not let the user back in.
    if row["deactivated_at"] is not None:
        return f"the user was deactivated on {_day(row['deactivated_at'])}"
    if row["token_revoked_at"] is not None:
        return f"bearer token revoked on {_day(row['token_revoked_at'])}"
    if row["expired"]:
        return f"bearer token expired on {_day(row['token_expires_at'])}"
    return None


def _day(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _status(row: asyncpg.Record) -> TokenStatus:
    return TokenStatus(
        user_id=str(row["id"]),
        expires_at=row["token_expires_at"],
        revoked_at=row["token_revoked_at"],
        last_used_at=row["token_last_used_at"],
    )


async def token_status(db: Db, user_id: uuid.UUID) -> TokenStatus | None:
    row = await db.fetchrow(LIFE_SQL, user_id)
    return _status(row) if row else None


async def revoke_token(db: Db, user_id: uuid.UUID) -> TokenStatus | None:
    """Revoke the user's token (None: no such user); revoking it again keeps the first time."""
    row = await db.fetchrow(REVOKE_SQL, user_id)
    return _status(row) if row else None


async def rotate_token(db: Db, user_id: uuid.UUID, expires_in_days: int) -> UserWithToken | None:
    """Replace the user's token by a new one (None: no such user): the old one stops working
    at once, revoked or not, and the new one is returned once, never stored."""
    token = new_token()
    row = await db.fetchrow(ROTATE_SQL, user_id, hash_token(token), expires_in_days)
    return with_token(row, token) if row else None


async def count_users(conn: Db) -> int:
    return int(await conn.fetchval(COUNT_USERS_SQL))


GET_USER_SQL = (
    "SELECT id, name, role, institution_id, specialty, created_at FROM users WHERE id = $1"
)


async def get(conn: Db, user_id: uuid.UUID) -> UserPublic | None:
    row = await conn.fetchrow(GET_USER_SQL, user_id)
    return user_public(row) if row else None


# --- the admins' list of users, roles and deactivation ---------------------------------------

LIST_SQL = """
SELECT u.id, u.name, u.email, u.role, u.institution_id, i.name AS institution_name,
       u.specialty, u.created_at, u.deactivated_at, u.password_hash IS NOT NULL AS has_password
FROM users u LEFT JOIN institutions i ON i.id = u.institution_id
WHERE ($1::text IS NULL OR u.role = $1)
  AND ($2::text IS NULL OR u.name ILIKE '%' || $2 || '%' OR u.email ILIKE '%' || $2 || '%')
ORDER BY u.deactivated_at IS NOT NULL, u.created_at DESC, u.id
LIMIT $3"""
ONE_SQL = """
SELECT u.id, u.name, u.email, u.role, u.institution_id, i.name AS institution_name,
       u.specialty, u.created_at, u.deactivated_at, u.password_hash IS NOT NULL AS has_password
FROM users u LEFT JOIN institutions i ON i.id = u.institution_id
WHERE u.id = $1"""
SET_ROLE_SQL = """
UPDATE users SET role = $2, specialty = coalesce($3, specialty) WHERE id = $1"""
# The token revoked with the account: its status then says so, as a revocation by hand would.
DEACTIVATE_SQL = """
UPDATE users
SET deactivated_at = coalesce(deactivated_at, now()),
    token_revoked_at = coalesce(token_revoked_at, now())
WHERE id = $1"""
END_SESSIONS_SQL = """
UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"""
# Unused links (set or reset a password, confirm the address) would let the person back in.
END_LINKS_SQL = """
UPDATE account_links SET used_at = now() WHERE user_id = $1 AND used_at IS NULL"""


def _listed(row: asyncpg.Record) -> UserListed:
    return UserListed(
        id=str(row["id"]),
        name=row["name"],
        email=row["email"],
        role=Role(row["role"]),
        institution_id=row["institution_id"],
        institution_name=row["institution_name"],
        specialty=row["specialty"],
        created_at=row["created_at"],
        deactivated_at=row["deactivated_at"],
        has_password=row["has_password"],
    )


async def list_users(db: Db, role: Role | None, search: str | None, limit: int) -> list[UserListed]:
    """Users, active ones first, newest first; of one role, or whose name or e-mail holds
    `search`."""
    rows = await db.fetch(LIST_SQL, role.value if role else None, search or None, limit)
    return [_listed(r) for r in rows]


async def listed(db: Db, user_id: uuid.UUID) -> UserListed | None:
    row = await db.fetchrow(ONE_SQL, user_id)
    return _listed(row) if row else None


async def set_role(db: Db, user_id: uuid.UUID, role: Role, specialty: str | None) -> None:
    await db.execute(SET_ROLE_SQL, user_id, role.value, specialty)


async def deactivate(db: Db, user_id: uuid.UUID) -> int:
    """Deactivate the user, revoke its token, end its sessions and retire its links, in one
    transaction; returns how many sessions ended."""

    async def apply(c: Conn) -> int:
        await c.execute(DEACTIVATE_SQL, user_id)
        ended = await c.execute(END_SESSIONS_SQL, user_id)
        await c.execute(END_LINKS_SQL, user_id)
        return int(ended.split()[-1])

    return await in_transaction(db, apply)
