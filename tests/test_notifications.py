"""The notification outbox as its addressees and the mail relay see it: one row per event,
each sent once however often delivery runs, a failed send kept and retried, and every user
reading only their own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from grantflow.notify import Recipient
from schemas.common import Role
from schemas.notifications import NewNotification, NotificationKind, NotificationPublic
from store import notifications
from tests.conftest import SESSION, Stack, User, UserFactory

pytestmark = SESSION


def note(user: User, n: int = 0, key: str | None = None) -> NewNotification:
    return NewNotification(
        key=key or f"test:{uuid.uuid4()}",
        user_id=user.id,
        kind=NotificationKind.reminder,
        subject=f"Reminder {n}",
        body="Your review is due tomorrow.",
        created_at=datetime.now(UTC),
    )


class Counting:
    """A sender that keeps what it sent, and can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[str] = []
        self.fail = fail

    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        await asyncio.sleep(0.01)  # a slow relay: lets concurrent deliveries overlap
        if self.fail:
            raise ConnectionError("relay down")
        self.sent.append(notification.subject)


async def row(stack: Stack, key: str) -> dict[str, object]:
    found = await stack.pool.fetchrow(
        "SELECT attempts, last_error, delivered_at FROM notifications WHERE key = $1", key
    )
    assert found is not None
    return dict(found)


async def test_the_same_notification_added_twice_is_one_row(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await make_user(Role.reviewer, specialty="cardiology")
    first = note(user, key=f"task:{uuid.uuid4()}:offered")
    async with stack.pool.acquire() as conn:
        await notifications.add(conn, [first])
        await notifications.add(conn, [first.model_copy(update={"subject": "Changed"})])
    count = await stack.pool.fetchval(
        "SELECT count(*) FROM notifications WHERE key = $1", first.key
    )
    assert count == 1
    items, _ = await notifications.page(stack.pool, uuid.UUID(user.id), cursor=None, limit=10)
    assert [i.subject for i in items] == ["Reminder 0"]


async def test_delivery_sends_each_notification_once_however_often_and_concurrently_it_runs(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await make_user(Role.reviewer, specialty="cardiology")
    items = [note(user, n) for n in range(5)]
    async with stack.pool.acquire() as conn:
        await notifications.add(conn, items)
    sender = Counting()
    keys = [n.key for n in items]
    counts = await asyncio.gather(
        notifications.deliver(stack.pool, keys, sender),
        notifications.deliver(stack.pool, keys, sender),
    )
    assert sum(counts) == 5
    assert await notifications.deliver(stack.pool, keys, sender) == 0
    assert sorted(sender.sent) == [f"Reminder {n}" for n in range(5)]


async def test_a_failed_send_is_kept_with_its_error_and_sent_by_the_next_delivery(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await make_user(Role.reviewer, specialty="cardiology")
    item = note(user)
    async with stack.pool.acquire() as conn:
        await notifications.add(conn, [item])
    down = Counting(fail=True)
    with pytest.raises(ConnectionError):  # raised, so that the activity retries
        await notifications.deliver(stack.pool, [item.key], down)
    failed = await row(stack, item.key)
    assert failed["attempts"] == 1 and failed["delivered_at"] is None
    assert failed["last_error"] == "ConnectionError: relay down"
    up = Counting()
    assert await notifications.deliver(stack.pool, [item.key], up) == 1
    assert await notifications.deliver(stack.pool, [item.key], up) == 0
    sent = await row(stack, item.key)
    assert up.sent == ["Reminder 0"] and sent["attempts"] == 2 and sent["last_error"] is None


async def test_users_read_only_their_own_notifications_page_by_page(
    stack: Stack, make_user: UserFactory
) -> None:
    mine = await make_user(Role.reviewer, specialty="cardiology")
    other = await make_user(Role.reviewer, specialty="cardiology")
    async with stack.pool.acquire() as conn:
        await notifications.add(conn, [note(mine, n) for n in range(5)] + [note(other, 99)])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await stack.api.get("/v1/me/notifications", params=params, headers=mine.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [n["subject"] for n in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Reminder {n}" for n in reversed(range(5))]  # newest first
    assert pages == 3
    assert (await stack.api.get("/v1/me/notifications")).status_code == 401
    bad = await stack.api.get("/v1/me/notifications", params={"cursor": "x"}, headers=mine.headers)
    assert bad.status_code == 422
