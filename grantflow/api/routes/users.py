"""Who am I, and (for admins) new users with their tokens."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from grantflow.api.deps import Admin, CurrentCaller, DbConn, Res
from grantflow.store import users
from schemas.users import UserCreate, UserPublic, UserWithToken

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=UserPublic)
async def me(caller: CurrentCaller, conn: DbConn) -> UserPublic:
    """The user behind the bearer token."""
    found = await users.get(conn, uuid.UUID(caller.actor.user_id))
    assert found is not None
    return found


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserWithToken)
async def create_user(body: UserCreate, _: Admin, res: Res) -> UserWithToken:
    """Create a user; its token is in this response and nowhere else, ever."""
    try:
        async with res.pool.acquire() as conn:
            return await users.create_user(conn, body)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
