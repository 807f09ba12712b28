"""A user's notifications: offers, reminders, expiries, extensions, flags."""

from __future__ import annotations

import uuid

from grantflow.services.context import Caller, Resources
from grantflow.services.errors import Invalid
from grantflow.store import notifications
from schemas.notifications import NotificationPage


async def page(
    res: Resources, caller: Caller, *, cursor: str | None = None, limit: int = 50
) -> NotificationPage:
    """The caller's own notifications, newest first, with `delivered_at` once the sender
    sent them (everyone signed in). A page's `next_cursor` given as `cursor` gives older
    ones; a bad cursor is Invalid."""
    try:
        items, next_cursor = await notifications.page(
            res.pool, uuid.UUID(caller.actor.user_id), cursor=cursor, limit=limit
        )
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return NotificationPage(items=items, next_cursor=next_cursor)
