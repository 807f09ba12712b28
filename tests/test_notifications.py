"""The notification outbox as its addressees, the admins and the mail relay see it: one row
per event (the in-app list has each exactly once), each sent once however often (and however
concurrently) delivery runs, and at least once when a delivery dies between a send and its
record (sent again then, at most once more, with the same Message-ID); no row locked while the
relay is called; a failed send kept with its error and retried; and every user reading only
their own, page by page.

Notifications are written with `store.notifications.add` (what the activities call) and sent
with `store.notifications.deliver` (what they call next), against the session's database;
each test has users of its own (reviewers of a specialty no programme offers), so that no
workflow of another test ever writes to them. Admins get a copy of every admin notification
of the suite, so what an admin sees is checked on this test's notifications only."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from activities.review import ReviewActivities
from grantflow.notify import Recipient, SmtpSender
from grantflow.settings import Settings
from grantflow.store import notifications
from schemas.common import Role
from schemas.notifications import NewNotification, NotificationKind, NotificationPublic
from schemas.review import ReviewChange
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    create_programme,
    eventually,
)

pytestmark = [SESSION, pytest.mark.system]


def note(user: User, subject: str, key: str | None = None) -> NewNotification:
    return NewNotification(
        key=key or f"test:{uuid.uuid4()}",
        user_id=user.id,
        kind=NotificationKind.reminder,
        subject=subject,
        body="Your review is due tomorrow.",
        created_at=datetime.now(UTC),
    )


class Relay:
    """A mail relay stand-in: keeps (notification id, addressee, subject) per message sent.

    `failing`: subjects it refuses (raising, as a relay that is down). `held`: its first send
    waits (`holding` is set meanwhile) until `release()`, so that a delivery can be caught
    in the middle, holding the notifications it took, while another one runs."""

    def __init__(self, *, failing: set[str] | None = None, held: bool = False) -> None:
        self.sent: list[tuple[int, str, str]] = []
        self.tries = 0
        self.failing = failing or set()
        self.holding = asyncio.Event()
        self._released = asyncio.Event()
        if not held:
            self._released.set()

    def release(self) -> None:
        self._released.set()

    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        self.tries += 1
        if not self._released.is_set():
            self.holding.set()
            # Fails (rather than hangs) if the test never releases it.
            await asyncio.wait_for(self._released.wait(), timeout=10)
        if notification.subject in self.failing:
            raise ConnectionError("relay down")
        self.sent.append((notification.id, recipient.user_id, notification.subject))

    @property
    def subjects(self) -> list[str]:
        return [subject for _, _, subject in self.sent]


async def add(stack: Stack, items: list[NewNotification]) -> None:
    """As an activity does: in a transaction, with the change the notifications announce."""
    async with stack.pool.acquire() as conn, conn.transaction():
        await notifications.add(conn, items)


async def outbox_row(stack: Stack, key: str) -> dict[str, Any]:
    found = await stack.pool.fetchrow(
        "SELECT id, user_id, subject, attempts, last_error, delivered_at, claimed_at"
        " FROM notifications WHERE key = $1",
        key,
    )
    assert found is not None, key
    return dict(found)


async def seen_by(stack: Stack, user: User, **params: Any) -> dict[str, Any]:
    response = await stack.api.get("/v1/me/notifications", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def all_seen_by(stack: Stack, user: User, limit: int = 50) -> list[dict[str, Any]]:
    """Every notification of the user, following `next_cursor` to the end."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = await seen_by(stack, user, **params)
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


async def a_reviewer(make_user: UserFactory) -> User:
    """A reviewer no programme of the suite will ever offer a task to."""
    return await make_user(Role.reviewer, specialty=f"notifications-{uuid.uuid4().hex[:8]}")


# --- one row per key -----------------------------------------------------------------------


async def test_the_same_notification_added_twice_is_one_row(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    first = note(user, "Review requested", key=f"task:{uuid.uuid4()}:offered")
    await add(stack, [first])
    # A retried activity adds it again (even with another text); so does a batch repeating it.
    await add(stack, [first.model_copy(update={"subject": "Changed"})])
    await add(stack, [first, first])
    count = await stack.pool.fetchval(
        "SELECT count(*) FROM notifications WHERE key = $1", first.key
    )
    assert count == 1
    seen = (await seen_by(stack, user))["items"]
    assert [(n["subject"], n["kind"]) for n in seen] == [("Review requested", "reminder")]
    relay = Relay()
    assert await notifications.deliver(stack.pool, [first.key, first.key], relay) == 1
    assert relay.subjects == ["Review requested"]


async def test_a_retried_activity_writes_and_sends_each_notification_once(
    stack: Stack, make_user: UserFactory, admin: User, applicant: User
) -> None:
    """The review workflow's write activity, run twice with the same change (Temporal retries
    it after a timeout): the reviewer and every admin have one notification each, sent once."""
    specialty = f"notifications-{uuid.uuid4().hex[:8]}"
    programme = await create_programme(stack, admin, specialties=[specialty])
    submitted = await stack.api.post(
        "/v1/applications",
        json=application_body(programme["id"], specialty=specialty),
        headers=applicant.headers,
    )
    assert submitted.status_code == 201, submitted.text
    application_id = submitted.json()["id"]
    reviewer = await a_reviewer(make_user)
    tag = uuid.uuid4().hex[:8]
    workflow_id = f"test-retry-{tag}"
    change = ReviewChange(
        application_id=application_id,
        programme_id=programme["id"],
        workflow_id=workflow_id,
        version=1,
        kind="review_deadline_extended",
        at=datetime.now(UTC),
        notify=[note(reviewer, f"Deadline moved {tag}", key=f"{workflow_id}:1:extended")],
        notify_admins=note(reviewer, f"Needs an admin {tag}", key=f"{workflow_id}:1:flagged"),
    )
    relay = Relay()
    activities = ReviewActivities(stack.pool, relay)
    await activities.record_change(change)
    await activities.record_change(change)

    assert [n["subject"] for n in await all_seen_by(stack, reviewer)] == [f"Deadline moved {tag}"]
    mine = [n for n in await all_seen_by(stack, admin) if tag in n["subject"]]
    assert [(n["subject"], n["application_id"]) for n in mine] == [(f"Needs an admin {tag}", None)]
    assert all(n["delivered_at"] is not None for n in mine)
    admins = await stack.pool.fetchval("SELECT count(*) FROM users WHERE role = 'admin'")
    assert sorted(relay.subjects) == [f"Deadline moved {tag}"] + [f"Needs an admin {tag}"] * admins
    assert len({notification_id for notification_id, _, _ in relay.sent}) == len(relay.sent)
    assert (mine[0]["id"], admin.id, f"Needs an admin {tag}") in relay.sent


# --- sent once ---------------------------------------------------------------------------------


async def test_delivering_twice_sends_each_notification_once(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    items = [note(user, f"Reminder {n}") for n in range(3)]
    await add(stack, items)
    assert all(n["delivered_at"] is None for n in (await seen_by(stack, user))["items"])
    relay = Relay()
    keys = [n.key for n in items]
    assert await notifications.deliver(stack.pool, keys, relay) == 3
    assert await notifications.deliver(stack.pool, keys, relay) == 0
    assert relay.subjects == ["Reminder 0", "Reminder 1", "Reminder 2"]
    assert {recipient for _, recipient, _ in relay.sent} == {user.id}
    seen = (await seen_by(stack, user))["items"]
    assert [n["subject"] for n in seen] == ["Reminder 2", "Reminder 1", "Reminder 0"]
    assert all(n["delivered_at"] is not None for n in seen)
    assert sorted(n["id"] for n in seen) == sorted(i for i, _, _ in relay.sent)
    for key in keys:
        row = await outbox_row(stack, key)
        assert row["attempts"] == 1 and row["last_error"] is None


async def test_concurrent_deliveries_send_each_notification_once(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    items = [note(user, f"Reminder {n}") for n in range(6)]
    await add(stack, items)
    keys = [n.key for n in items]
    # A delivery is caught in the relay, holding (claimed) the notifications it took: another
    # delivery of the same keys leaves them alone rather than sending them too, and says so
    # (its activity comes back later, when they are sent).
    relay = Relay(held=True)
    first = asyncio.create_task(notifications.deliver(stack.pool, keys, relay))
    await asyncio.wait_for(relay.holding.wait(), timeout=10)
    with pytest.raises(notifications.StillSending, match="6 notification"):
        await asyncio.wait_for(notifications.deliver(stack.pool, keys, relay), 10)
    assert relay.tries == 1
    relay.release()
    assert await first == 6
    assert sorted(relay.subjects) == [f"Reminder {n}" for n in range(6)]
    assert relay.tries == 6
    assert await notifications.deliver(stack.pool, keys, relay) == 0  # all sent: nothing to say
    # Three more at once, and three deliveries of a new batch at once: each sent once.
    more = [note(user, f"Later {n}") for n in range(6)]
    await add(stack, more)
    outcomes = await asyncio.gather(
        *(notifications.deliver(stack.pool, keys + [n.key for n in more], relay) for _ in range(3)),
        return_exceptions=True,
    )
    counts = [o for o in outcomes if isinstance(o, int)]
    assert sum(counts) == 6 and relay.tries == 12
    assert all(isinstance(o, int | notifications.StillSending) for o in outcomes), outcomes
    assert sorted(relay.subjects) == sorted(
        [f"Reminder {n}" for n in range(6)] + [f"Later {n}" for n in range(6)]
    )
    seen = (await seen_by(stack, user))["items"]
    assert len(seen) == 12 and all(n["delivered_at"] is not None for n in seen)
    for key in keys + [n.key for n in more]:
        assert (await outbox_row(stack, key))["attempts"] == 1


# --- a failed send ---------------------------------------------------------------------------


async def test_a_failed_send_stays_pending_with_its_error_and_the_next_delivery_sends_it(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    items = [note(user, f"Reminder {n}") for n in range(3)]
    await add(stack, items)
    keys = [n.key for n in items]
    down = Relay(failing={"Reminder 1"})
    with pytest.raises(ConnectionError, match="relay down"):  # raised: the activity retries
        await notifications.deliver(stack.pool, keys, down)
    # The others had their turn; the failed one is pending, with its attempt and error.
    assert down.subjects == ["Reminder 0", "Reminder 2"]
    failed = await outbox_row(stack, keys[1])
    assert failed["delivered_at"] is None
    assert failed["attempts"] == 1
    assert failed["last_error"] == "ConnectionError: relay down"
    for key in (keys[0], keys[2]):
        sent = await outbox_row(stack, key)
        assert sent["delivered_at"] is not None and sent["attempts"] == 1
    seen = {n["subject"]: n["delivered_at"] for n in (await seen_by(stack, user))["items"]}
    assert seen["Reminder 1"] is None and seen["Reminder 0"] and seen["Reminder 2"]

    up = Relay()
    assert await notifications.deliver(stack.pool, keys, up) == 1
    assert await notifications.deliver(stack.pool, keys, up) == 0
    assert up.subjects == ["Reminder 1"]
    retried = await outbox_row(stack, keys[1])
    assert retried["delivered_at"] is not None
    assert retried["attempts"] == 2 and retried["last_error"] is None
    assert all(n["delivered_at"] for n in (await seen_by(stack, user))["items"])


async def test_a_send_failing_twice_counts_both_attempts(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    item = note(user, "Reminder")
    await add(stack, [item])
    down = Relay(failing={"Reminder"})
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await notifications.deliver(stack.pool, [item.key], down)
    row = await outbox_row(stack, item.key)
    assert row["attempts"] == 2 and row["delivered_at"] is None
    assert row["last_error"] == "ConnectionError: relay down"
    up = Relay()
    assert await notifications.deliver(stack.pool, [item.key], up) == 1
    assert up.subjects == ["Reminder"] and down.sent == []
    assert (await outbox_row(stack, item.key))["attempts"] == 3


async def test_after_an_outage_the_pending_notifications_are_sent_once(
    stack: Stack, make_user: UserFactory
) -> None:
    """`deliver_pending`, the catch-up after the relay was down, run twice at once: what
    failed goes out once; what was sent already does not go out again."""
    user = await a_reviewer(make_user)
    items = [note(user, f"Reminder {n}") for n in range(4)]
    await add(stack, items)
    keys = [n.key for n in items]
    down = Relay(failing={"Reminder 1", "Reminder 3"})
    with pytest.raises(ConnectionError):
        await notifications.deliver(stack.pool, keys, down)
    up = Relay()
    await asyncio.gather(
        notifications.deliver_pending(stack.pool, up),
        notifications.deliver_pending(stack.pool, up),
    )
    # Other tests' workflows may have had something pending too: count this user's only.
    assert sorted(s for _, to, s in up.sent if to == user.id) == ["Reminder 1", "Reminder 3"]
    assert down.subjects == ["Reminder 0", "Reminder 2"]
    seen = (await seen_by(stack, user))["items"]
    assert len(seen) == 4 and all(n["delivered_at"] is not None for n in seen)


async def test_a_failure_recorded_late_never_undoes_another_deliverys_send(
    stack: Stack, make_user: UserFactory
) -> None:
    """A send hangs past its claim's lease; another delivery takes the notification and sends
    it; then the first send fails. Its failure is counted, but the notification stays sent and
    the second delivery's record stands: nothing is sent a third time."""
    user = await a_reviewer(make_user)
    item = note(user, "Reminder")
    await add(stack, [item])
    down, up = Relay(failing={"Reminder"}, held=True), Relay()
    hanging = asyncio.create_task(notifications.deliver(stack.pool, [item.key], down))
    await asyncio.wait_for(down.holding.wait(), timeout=10)
    await asyncio.sleep(0.05)
    late = timedelta(milliseconds=10)  # the lease, as the second delivery counts it, is over
    assert await notifications.deliver(stack.pool, [item.key], up, lease=late) == 1
    down.release()
    with pytest.raises(ConnectionError):
        await hanging
    row = await outbox_row(stack, item.key)
    assert row["delivered_at"] is not None and row["attempts"] == 2
    assert row["last_error"] is None and row["claimed_at"] is None
    assert up.subjects == ["Reminder"] and down.sent == []
    assert await notifications.deliver(stack.pool, [item.key], up) == 0
    seen = (await seen_by(stack, user))["items"]
    assert [(n["subject"], n["delivered_at"] is not None) for n in seen] == [("Reminder", True)]


# --- a delivery that dies mid-way --------------------------------------------------------------


class Mailbox(SmtpSender):
    """The SMTP sender up to the relay: each message it would hand over is kept, with its
    Message-ID. `hang_after`: subjects after whose send it hangs (until cancelled)."""

    def __init__(self, hang_after: set[str] | None = None) -> None:
        super().__init__(Settings(smtp_host="relay.city.test", smtp_from="grantflow@city.test"))
        self.messages: list[tuple[str, str]] = []  # (Message-ID, Subject)
        self.hang_after = hang_after or set()
        self.hanging = asyncio.Event()

    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        await super().send(notification, recipient)
        if notification.subject in self.hang_after:
            self.hanging.set()
            await asyncio.Event().wait()

    def _send(self, msg: EmailMessage) -> None:
        self.messages.append((str(msg["Message-ID"]), str(msg["Subject"])))


async def with_address(stack: Stack, user: User) -> None:
    await stack.pool.execute(
        "UPDATE users SET email = $2 WHERE id = $1",
        uuid.UUID(user.id),
        f"{user.id}@clinic.test",
    )


# A worker process delivering through SMTP that dies (SIGKILL) right after the relay took the
# message, before the send is recorded.
DYING_DELIVERY = """
import asyncio, os, signal, sys
from grantflow.db import create_pool
from grantflow.notify import SmtpSender
from grantflow.settings import Settings
from grantflow.store import notifications

class Dying(SmtpSender):
    def _send(self, msg):
        with open(sys.argv[2], "a") as sent:
            sent.write(msg["Message-ID"] + "\\n")
        os.kill(os.getpid(), signal.SIGKILL)

async def main():
    pool = await create_pool(sys.argv[1], min_size=1, max_size=1)
    relay = Dying(Settings(smtp_host="relay.city.test", smtp_from="grantflow@city.test"))
    await notifications.deliver(pool, sys.argv[3:], relay)

asyncio.run(main())
"""


async def test_a_delivery_killed_after_the_send_sends_it_again_once_with_the_same_message_id(
    stack: Stack, make_user: UserFactory, tmp_path: Path
) -> None:
    user = await a_reviewer(make_user)
    await with_address(stack, user)
    item = note(user, "Review requested")
    await add(stack, [item])
    sent_file = tmp_path / "sent"
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DYING_DELIVERY, stack.database_url, str(sent_file), item.key
    )
    assert await asyncio.wait_for(worker.wait(), timeout=60) == -signal.SIGKILL
    [first_id] = sent_file.read_text().split()
    row = await outbox_row(stack, item.key)
    assert row["delivered_at"] is None and row["claimed_at"] is not None  # sent, not recorded

    # Its claim still holds: not sent again yet, and the activity is told to come back.
    relay = Mailbox()
    with pytest.raises(notifications.StillSending):
        await notifications.deliver(stack.pool, [item.key], relay)
    assert relay.messages == []
    # A minute later, the claim has lapsed: sent once more, as the same message.
    await stack.pool.execute(
        "UPDATE notifications SET claimed_at = claimed_at - interval '61 seconds' WHERE key = $1",
        item.key,
    )
    assert await notifications.deliver(stack.pool, [item.key], relay) == 1
    assert relay.messages == [(first_id, "Review requested")]
    assert await notifications.deliver(stack.pool, [item.key], relay) == 0
    row = await outbox_row(stack, item.key)
    assert row["delivered_at"] is not None and row["attempts"] == 1
    seen = (await seen_by(stack, user))["items"]
    assert [(n["subject"], n["delivered_at"] is not None) for n in seen] == [
        ("Review requested", True)
    ]


async def test_a_delivery_cancelled_mid_batch_lets_the_retry_send_the_rest_at_once(
    stack: Stack, make_user: UserFactory
) -> None:
    """The activity times out while the relay holds the second of three messages (already
    handed over): the retry sends the second again, with the same Message-ID, and the third
    for the first time; the first is not sent again."""
    user = await a_reviewer(make_user)
    await with_address(stack, user)
    items = [note(user, f"Reminder {n}") for n in range(3)]
    await add(stack, items)
    keys = [n.key for n in items]
    stuck = Mailbox(hang_after={"Reminder 1"})
    attempt = asyncio.create_task(notifications.deliver(stack.pool, keys, stuck))
    await asyncio.wait_for(stuck.hanging.wait(), timeout=10)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert [s for _, s in stuck.messages] == ["Reminder 0", "Reminder 1"]
    pending = {key: await outbox_row(stack, key) for key in keys}
    assert pending[keys[0]]["delivered_at"] is not None
    assert all(pending[k]["claimed_at"] is None for k in keys)  # released, not left to lapse

    retry = Mailbox()
    assert await notifications.deliver(stack.pool, keys, retry) == 2
    assert [s for _, s in retry.messages] == ["Reminder 1", "Reminder 2"]
    assert retry.messages[0][0] == stuck.messages[1][0]  # the same message, sent again
    every_id = [i for i, _ in stuck.messages + retry.messages]
    assert len(set(every_id)) == 3  # one Message-ID per notification
    assert await notifications.deliver(stack.pool, keys, retry) == 0
    seen = (await seen_by(stack, user))["items"]
    assert len(seen) == 3 and all(n["delivered_at"] is not None for n in seen)


async def test_no_row_is_locked_while_the_relay_is_called(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    items = [note(user, f"Reminder {n}") for n in range(2)]
    await add(stack, items)
    keys = [n.key for n in items]
    relay = Relay(held=True)
    sending = asyncio.create_task(notifications.deliver(stack.pool, keys, relay))
    await asyncio.wait_for(relay.holding.wait(), timeout=10)
    try:
        # Mid-send: the rows can be locked by anyone at once (NOWAIT fails on a held lock),
        # and another delivery is answered at once rather than waiting for this one.
        async with stack.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetch(
                "SELECT id FROM notifications WHERE key = ANY($1::text[]) FOR UPDATE NOWAIT",
                keys,
            )
            assert len(locked) == 2
        with pytest.raises(notifications.StillSending):
            await asyncio.wait_for(notifications.deliver(stack.pool, keys, Relay()), timeout=5)
        claims = [(await outbox_row(stack, k))["claimed_at"] for k in keys]
        assert all(c is not None for c in claims)  # claimed, committed, visible to everyone
    finally:
        relay.release()  # failing above, the held send must not hang the session's teardown
    assert await sending == 2
    assert relay.subjects == ["Reminder 0", "Reminder 1"]


# --- what a user reads -----------------------------------------------------------------------


async def test_users_read_only_their_own_notifications_page_by_page(
    stack: Stack, make_user: UserFactory
) -> None:
    mine = await a_reviewer(make_user)
    other = await a_reviewer(make_user)
    # Interleaved with someone else's, so that the pages' ids are not consecutive.
    for n in range(5):
        await add(stack, [note(mine, f"Mine {n}"), note(other, f"Other {n}")])
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await seen_by(stack, mine, **params)
        pages.append([n["subject"] for n in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["Mine 4", "Mine 3"], ["Mine 2", "Mine 1"], ["Mine 0"]]  # newest first
    assert [n["subject"] for n in await all_seen_by(stack, other, limit=5)] == [
        f"Other {n}" for n in reversed(range(5))
    ]
    # A page that ends exactly at the last notification has no next page.
    exact = await seen_by(stack, other, limit=5)
    assert len(exact["items"]) == 5 and exact["next_cursor"] is None
    # A cursor taken from someone else's page still shows only the caller's own.
    first_page = await seen_by(stack, other, limit=1)
    assert first_page["next_cursor"] is not None
    theirs = await seen_by(stack, mine, cursor=first_page["next_cursor"])
    assert [n["subject"] for n in theirs["items"]] == [f"Mine {n}" for n in reversed(range(5))]


async def test_account_links_reach_the_mailbox_but_never_the_notifications_list(
    stack: Stack, make_user: UserFactory
) -> None:
    """A reset link read with the account's bearer token would let whoever holds the token
    (a script, a leaked CLI config) set the password: the list leaves those e-mails out."""
    from grantflow.services.account import request_password_reset, set_demo_password

    user = await a_reviewer(make_user)
    email = f"links-{uuid.uuid4().hex[:8]}@clinic.example"
    await set_demo_password(stack.pool, uuid.UUID(user.id), email, "correct horse battery")
    await add(stack, [note(user, "Before")])
    await request_password_reset(stack.pool, stack.settings, email, client_addr="10.0.0.1")
    await add(stack, [note(user, "After")])
    outbox = await stack.pool.fetch(
        "SELECT kind, body FROM notifications WHERE user_id = $1 ORDER BY id", uuid.UUID(user.id)
    )
    assert [r["kind"] for r in outbox] == ["reminder", "account_link", "reminder"]
    assert "/reset-password?token=" in outbox[1]["body"]  # the mailbox has it
    listed = await all_seen_by(stack, user, limit=1)  # the link would sit on its own page
    assert [n["subject"] for n in listed] == ["After", "Before"]
    assert all(n["kind"] != "account_link" for n in listed)
    assert all("token=" not in (n["body"] or "") for n in listed)


async def test_notifications_need_a_valid_token_and_valid_paging(
    stack: Stack, make_user: UserFactory
) -> None:
    user = await a_reviewer(make_user)
    await add(stack, [note(user, "Reminder")])
    assert (await stack.api.get("/v1/me/notifications")).status_code == 401
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert (await stack.api.get("/v1/me/notifications", headers=bad_token)).status_code == 401
    for params in (
        {"cursor": "x"},
        {"cursor": "99999999999999999999"},
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
    ):
        response = await stack.api.get("/v1/me/notifications", params=params, headers=user.headers)
        assert response.status_code == 422, (params, response.text)
    assert [n["subject"] for n in (await seen_by(stack, user, limit=200))["items"]] == ["Reminder"]


# --- through the worker ----------------------------------------------------------------------


async def test_a_flagged_application_notifies_each_admin_once(
    stack: Stack, admin: User, applicant: User
) -> None:
    """End to end: no expert of the specialty, so the review workflow flags the application;
    the worker's sender sends the admin's copy once, and the admin reads it delivered."""
    specialty = f"notifications-{uuid.uuid4().hex[:8]}"
    programme = await create_programme(
        stack, admin, specialties=[specialty], params={"revision_window": 3600}
    )
    submitted = await stack.api.post(
        "/v1/applications",
        json=application_body(programme["id"], specialty=specialty),
        headers=applicant.headers,
    )
    assert submitted.status_code == 201, submitted.text
    application_id = submitted.json()["id"]

    async def flagged() -> list[dict[str, Any]]:
        return [
            n
            for n in await all_seen_by(stack, admin)
            if n["application_id"] == application_id and n["delivered_at"] is not None
        ]

    seen = await eventually(flagged)
    assert [n["kind"] for n in seen] == ["flagged"]
    sent = [n for n in stack.sender.sent if n.id == seen[0]["id"]]
    assert len(sent) == 1 and sent[0].subject == seen[0]["subject"]
    assert (await seen_by(stack, applicant))["items"] == []
