"""A user's notifications: offers, reminders, expiries, extensions, flags.

The e-mails that carry an account link (confirm the e-mail, set or reset the password) stay
out of the list: a bearer token that reads notifications must not be a way to take over the
account's password; the links reach only the mailbox."""

from __future__ import annotations

import uuid

from grantflow.services.context import Caller, Resources
from grantflow.services.errors import Invalid
from grantflow.store import notifications
from schemas.notifications import NotificationKind, NotificationPage

# Single-use links that act on the account itself: the mailbox's, never the API's.
HIDDEN = (NotificationKind.account_link,)


async def page(
    res: Resources, caller: Caller, *, cursor: str | None = None, limit: int = 50
) -> NotificationPage:
    """The caller's own notifications, newest first, with `delivered_at` once the sender
    sent them (everyone signed in). A page's `next_cursor` given as `cursor` gives older
    ones; a bad cursor is Invalid. Account links (confirm the e-mail, set or reset the
    password) are never listed: they reach only the mailbox."""
    try:
        items, next_cursor = await notifications.page(
            res.pool, uuid.UUID(caller.actor.user_id), cursor=cursor, limit=limit, hidden=HIDDEN
        )
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return NotificationPage(items=items, next_cursor=next_cursor)
