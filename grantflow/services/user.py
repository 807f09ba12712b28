"""Users: who the caller is, and new users with their bearer tokens (admins)."""

from __future__ import annotations

import uuid

from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Invalid, NotFound
from grantflow.store import users
from schemas.common import Role
from schemas.users import UserCreate, UserPublic, UserWithToken


async def me(res: Resources, caller: Caller) -> UserPublic:
    """The calling user as recorded (everyone signed in)."""
    found = await users.get(res.pool, uuid.UUID(caller.actor.user_id))
    if found is None:
        raise NotFound("user not found")
    return found


async def create(res: Resources, caller: Caller, body: UserCreate) -> UserWithToken:
    """Create a user (admins) and return it with its bearer token, which is stored only as
    a hash and shown nowhere else, ever. Invalid for an applicant, reviewer or coordinator
    without an institution, or a reviewer without a specialty."""
    require(caller, Role.admin)
    try:
        async with res.pool.acquire() as conn:
            return await users.create_user(conn, body)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
