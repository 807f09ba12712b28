"""Users, institutions and bearer tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

import asyncpg

from grantflow.store import Conn, Db, in_transaction
from schemas.common import Actor, OrganisationType, Role
from schemas.users import UserCreate, UserPublic, UserWithToken

TOKEN_PREFIX = "gf_"  # noqa: S105 - a prefix, not a secret

UPSERT_INSTITUTION_SQL = """
INSERT INTO institutions (id, name, organisation_type) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING"""
INSERT_USER_SQL = """
INSERT INTO users (id, name, role, institution_id, specialty, token_hash)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, role, institution_id, specialty, created_at"""
USER_BY_HASH_SQL = """
SELECT u.id, u.name, u.role, u.institution_id, u.specialty, u.token_hash,
       i.organisation_type
FROM users u LEFT JOIN institutions i ON i.id = u.institution_id
WHERE u.token_hash = $1"""
COUNT_USERS_SQL = "SELECT count(*) FROM users"
ORGANISATION_TYPE_SQL = "SELECT organisation_type FROM institutions WHERE id = $1"


def institution_id(name: str) -> str:
    """A stable slug, so `--institution "City Clinic 5"` names the same institution twice."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_user(conn: Conn, new: UserCreate) -> UserWithToken:
    """Insert a user and return it with its token, which is never stored or shown again."""
    if new.role in (Role.applicant, Role.reviewer, Role.coordinator) and not new.institution:
        # A coordinator's institution is its clinic: it sees that clinic's pilot sites only.
        raise ValueError(f"a {new.role} needs an institution")
    if new.role == Role.reviewer and not new.specialty:
        raise ValueError("a reviewer needs a specialty")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
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
        )

    row = await in_transaction(conn, insert)
    assert row is not None
    return UserWithToken(user=user_public(row), token=token)


def user_public(row: asyncpg.Record) -> UserPublic:
    return UserPublic(
        id=str(row["id"]),
        name=row["name"],
        role=Role(row["role"]),
        institution_id=row["institution_id"],
        specialty=row["specialty"],
        created_at=row["created_at"],
    )


async def actor_for_token(conn: Db, token: str) -> tuple[Actor, str | None] | None:
    """The user behind a bearer token and its organisation type, or None."""
    digest = hash_token(token)
    row = await conn.fetchrow(USER_BY_HASH_SQL, digest)
    # The index lookup already matched; compare_digest keeps the final check constant-time.
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
        return None
    actor = Actor(
        user_id=str(row["id"]),
        role=Role(row["role"]),
        name=row["name"],
        institution_id=row["institution_id"],
    )
    return actor, row["organisation_type"]


async def count_users(conn: Db) -> int:
    return int(await conn.fetchval(COUNT_USERS_SQL))


GET_USER_SQL = (
    "SELECT id, name, role, institution_id, specialty, created_at FROM users WHERE id = $1"
)


async def get(conn: Db, user_id: uuid.UUID) -> UserPublic | None:
    row = await conn.fetchrow(GET_USER_SQL, user_id)
    return user_public(row) if row else None
