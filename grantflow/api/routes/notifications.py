"""A user's notifications: offers, reminders, expiries, extensions, flags."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from grantflow.api.deps import CurrentCaller, Res
from grantflow.services import notification
from schemas.notifications import NotificationPage

router = APIRouter(prefix="/v1/me", tags=["users"])


@router.get("/notifications", response_model=NotificationPage)
async def my_notifications(
    caller: CurrentCaller,
    res: Res,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationPage:
    """Your notifications, newest first, with `delivered_at` once the sender sent them.
    Pass `next_cursor` as `cursor` for older ones."""
    return await notification.page(res, caller, cursor=cursor, limit=limit)
