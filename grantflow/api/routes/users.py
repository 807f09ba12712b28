"""Who am I, and (for admins) new users with their tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from grantflow.api.deps import Admin, CurrentCaller, Res
from grantflow.services import user
from schemas.users import UserCreate, UserPublic, UserWithToken

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=UserPublic)
async def me(caller: CurrentCaller, res: Res) -> UserPublic:
    """The user behind the bearer token."""
    return await user.me(res, caller)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserWithToken)
async def create_user(body: UserCreate, caller: Admin, res: Res) -> UserWithToken:
    """Create a user; its token is in this response and nowhere else, ever."""
    return await user.create(res, caller, body)
