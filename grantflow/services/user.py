"""Users: who the caller is, and new users with their bearer tokens, revoked or rotated
(admins); the admins' list of users, invitations to the pages, role changes and
deactivation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TypeVar

from grantflow.services import account as accounts
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Conflict, Invalid, NotFound
from grantflow.store import account, users
from schemas.common import Role
from schemas.users import (
    MAX_TOKEN_DAYS,
    TOKEN_DAYS,
    Deactivation,
    Invitation,
    RoleChange,
    TokenStatus,
    UserCreate,
    UserListed,
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


async def list_users(
    res: Resources,
    caller: Caller,
    role: Role | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[UserListed]:
    """Users, active ones first and the newest first, of one role or whose name or e-mail
    holds `search` (admins)."""
    require(caller, Role.admin)
    return await users.list_users(res.pool, role, (search or "").strip()[:200], limit)


async def get_user(res: Resources, caller: Caller, user_id: uuid.UUID) -> UserListed:
    """One user as the admins' list shows it (admins). NotFound for an unknown user."""
    require(caller, Role.admin)
    return _found(await users.listed(res.pool, user_id))


async def invite(res: Resources, caller: Caller, body: Invitation) -> UserListed:
    """Create a user for the pages and send it, through the notification outbox, a single-use
    link to choose its password, in its language (admins): `grantflow users create --email`
    does the same. Invalid (on `email`) for a malformed or taken address, checked before the
    user is made; otherwise as `create`."""
    require(caller, Role.admin)
    await accounts.email_available(res.pool, body.email)
    made = await create(
        res, caller, UserCreate.model_validate(body.model_dump(exclude={"email", "locale"}))
    )
    user_id = uuid.UUID(made.user.id)
    await account.set_preferences(res.pool, user_id, locale=body.locale)
    await accounts.invite(res.pool, res.settings, user_id, body.email)
    await _audit(res, caller, "invited_by_admin", user_id, {"role": body.role.value})
    return await get_user(res, caller, user_id)


async def change_role(
    res: Resources, caller: Caller, user_id: uuid.UUID, body: RoleChange
) -> UserListed:
    """Give a user another role, with the reason on record (admins). Its pages and its token
    act in the new role from its next request. Conflict for the caller's own role (an admin
    cannot lock itself out) and for a deactivated user; Invalid (on `specialty`) for a
    reviewer without one, and for an applicant, reviewer or coordinator without an
    institution. NotFound for an unknown user."""
    require(caller, Role.admin)
    found = await get_user(res, caller, user_id)
    if str(user_id) == caller.actor.user_id:
        raise Conflict("you cannot change your own role")
    if found.deactivated_at is not None:
        raise Conflict("the user is deactivated")
    if body.role in (Role.applicant, Role.reviewer, Role.coordinator) and not found.institution_id:
        raise _invalid("role", f"a {body.role} needs an institution; invite a new user instead")
    if body.role == Role.reviewer and not (body.specialty or found.specialty):
        raise _invalid("specialty", "a reviewer needs a specialty")
    await users.set_role(res.pool, user_id, body.role, body.specialty)
    detail = {"from": found.role.value, "to": body.role.value, "reason": body.reason}
    await _audit(res, caller, "role_changed", user_id, detail)
    return await get_user(res, caller, user_id)


async def deactivate(
    res: Resources, caller: Caller, user_id: uuid.UUID, body: Deactivation
) -> UserListed:
    """Deactivate a user, with the reason on record (admins): every session it has ends at
    once, its bearer token is revoked (a rotated one is refused too), its unused links stop
    working, and it can no longer sign in or ask for a password reset. Its name stays on what
    it did. Deactivating it again changes nothing. Conflict for the caller itself. NotFound
    for an unknown user."""
    require(caller, Role.admin)
    found = await get_user(res, caller, user_id)
    if str(user_id) == caller.actor.user_id:
        raise Conflict("you cannot deactivate yourself")
    if found.deactivated_at is not None:
        return found
    ended = await users.deactivate(res.pool, user_id)
    await _audit(res, caller, "deactivated", user_id, {"reason": body.reason, "sessions": ended})
    return await get_user(res, caller, user_id)


async def _audit(
    res: Resources, caller: Caller, kind: str, user_id: uuid.UUID, detail: Mapping[str, object]
) -> None:
    """On the accounts' audit trail, with the admin who did it."""
    by = {"by": caller.actor.user_id, "by_name": caller.actor.name}
    await account.add_event(res.pool, kind, user_id=user_id, detail={**detail, **by})


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(message, [{"type": "value_error", "loc": [field], "msg": message}])


def _found(found: T | None) -> T:
    if found is None:
        raise NotFound("user not found")
    return found
