"""A user's notifications: offers, reminders, expiries, extensions, flags."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from grantflow.api.deps import CurrentCaller, DbConn
from grantflow.store import notifications
from schemas.notifications import NotificationPage

router = APIRouter(prefix="/v1/me", tags=["users"])


@router.get("/notifications", response_model=NotificationPage)
async def my_notifications(
    caller: CurrentCaller,
    db: DbConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationPage:
    """Your notifications, newest first, with `delivered_at` once the sender sent them.
    Pass `next_cursor` as `cursor` for older ones."""
    try:
        items, next_cursor = await notifications.page(
            db, uuid.UUID(caller.actor.user_id), cursor=cursor, limit=limit
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return NotificationPage(items=items, next_cursor=next_cursor)
