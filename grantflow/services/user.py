"""Users: who the caller is, and new users with their bearer tokens, revoked or rotated
(admins)."""

from __future__ import annotations

import uuid
from typing import TypeVar

from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Invalid, NotFound
from grantflow.store import users
from schemas.common import Role
from schemas.users import (
    MAX_TOKEN_DAYS,
    TOKEN_DAYS,
    TokenStatus,
    UserCreate,
    UserPublic,
    UserWithToken,
)

T = TypeVar("T")


async def me(res: Resources, caller: Caller) -> UserPublic:
    """The calling user as recorded (everyone signed in)."""
    found = await users.get(res.pool, uuid.UUID(caller.actor.user_id))
    if found is None:
        raise NotFound("user not found")
    return found


async def create(res: Resources, caller: Caller, body: UserCreate) -> UserWithToken:
    """Create a user (admins) and return it with its bearer token, which is stored only as
    a hash and shown nowhere else, ever; it expires after `token_expires_in_days`. Invalid
    for an applicant, reviewer or coordinator without an institution, or a reviewer without
    a specialty."""
    require(caller, Role.admin)
    try:
        async with res.pool.acquire() as conn:
            return await users.create_user(conn, body)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


async def token_status(res: Resources, caller: Caller, user_id: uuid.UUID) -> TokenStatus:
    """When the user's bearer token expires, whether it was revoked, when it was last used
    (admins). NotFound for an unknown user."""
    require(caller, Role.admin)
    return _found(await users.token_status(res.pool, user_id))


async def revoke_token(res: Resources, caller: Caller, user_id: uuid.UUID) -> TokenStatus:
    """Revoke the user's bearer token (admins): from now on it is refused with 401, saying
    so, until the token is rotated. Revoking it again changes nothing. NotFound for an
    unknown user."""
    require(caller, Role.admin)
    return _found(await users.revoke_token(res.pool, user_id))


async def rotate_token(
    res: Resources, caller: Caller, user_id: uuid.UUID, expires_in_days: int = TOKEN_DAYS
) -> UserWithToken:
    """Give the user a new bearer token in place of the old one, revoked or not (admins):
    the old one is refused from now on; the new one expires after `expires_in_days` and is
    returned here once, stored only as a hash. NotFound for an unknown user; Invalid for a
    life outside 1 to 3650 days."""
    require(caller, Role.admin)
    if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise Invalid(f"a token lives 1 to {MAX_TOKEN_DAYS} days, not {expires_in_days}")
    return _found(await users.rotate_token(res.pool, user_id, expires_in_days))


def _found(found: T | None) -> T:
    if found is None:
        raise NotFound("user not found")
    return found
