"""Accounts of people who use the pages: applicants register themselves and confirm their
e-mail; staff are invited and set their password through a link; anyone may reset a forgotten
password by a link; sessions are rows, revocable one by one or all at once.

Accounts need no workflow: these functions take the pool and the settings (not Resources), so
that the CLI can invite staff without reaching Temporal. Links are random tokens stored hashed,
used once, before they expire, and sent through the notification outbox."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import asyncpg
import structlog
from pwdlib import PasswordHash
from pydantic import AfterValidator, Field, StringConstraints

from grantflow import i18n
from grantflow.i18n import gettext as _
from grantflow.notify import sender_from_settings
from grantflow.services.context import Caller
from grantflow.services.errors import Busy, Conflict, Invalid, NotFound
from grantflow.settings import Settings
from grantflow.store import Db, account, notifications
from grantflow.store.account import Account as Account  # what the pages show
from schemas.common import Actor, Input, OrganisationType
from schemas.notifications import NewNotification, NotificationKind

log = structlog.get_logger(__name__)

SESSION_IDLE = timedelta(hours=2)
SESSION_ABSOLUTE = timedelta(hours=12)
LINK_LIFETIME = {
    "confirm_email": timedelta(days=3),
    "set_password": timedelta(days=7),
    "reset_password": timedelta(hours=1),
}
THROTTLE_WINDOW = timedelta(minutes=15)
PER_ACCOUNT = 5  # failed sign-ins of one account within the window
PER_ADDRESS = 20  # failed sign-ins from one client address, whatever the accounts
LINK_PATHS = {
    "confirm_email": "/confirm-email",
    "set_password": "/set-password",
    "reset_password": "/reset-password",
}
Purpose = Literal["confirm_email", "set_password", "reset_password"]

_hasher = PasswordHash.recommended()  # argon2id
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not an e-mail address")
    return value


def _zone(value: str) -> str:
    if not i18n.valid_time_zone(value):
        raise ValueError("not a time zone")
    return value


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
Password = Annotated[str, Field(min_length=10, max_length=200)]
TimeZone = Annotated[str, AfterValidator(_zone)]


class Registration(Input):
    """What an applicant fills in to register."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    email: Email
    institution: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=2, max_length=120)
    ]
    organisation_type: OrganisationType
    password: Password
    locale: Literal["ru", "en"] = "ru"
    time_zone: TimeZone = i18n.DEFAULT_TIME_ZONE


class Preferences(Input):
    locale: Literal["ru", "en"]
    time_zone: TimeZone


@dataclass(frozen=True)
class SignedIn:
    """A new session: its id goes in the cookie and nowhere else."""

    session_id: str
    account: Account


def caller_of(found: Account) -> Caller:
    """The caller a session stands for, as a bearer token's would."""
    actor = Actor(
        user_id=str(found.id),
        role=found.role,
        name=found.name,
        institution_id=found.institution_id,
    )
    return Caller(actor=actor, organisation_type=found.organisation_type)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def _hash(password: str) -> str:
    # About 50 ms of CPU and 64 MiB: in a thread, so the event loop serves others meanwhile.
    return await asyncio.to_thread(_hasher.hash, password)


@functools.cache
def _dummy_hash() -> str:
    """Verified when no account matches, so that a wrong address takes as long as a wrong
    password. Made at its first need, not at import: every process that imports this module
    (each CLI command, the API, the worker) paid a hash's CPU for it."""
    return _hasher.hash(secrets.token_urlsafe(16))


async def _verify(password: str, hashed: str | None) -> bool:
    def verify() -> bool:
        return _hasher.verify(password, hashed or _dummy_hash())

    return await asyncio.to_thread(verify) and bool(hashed)


async def _send_link(
    pool: asyncpg.Pool, settings: Settings, found: Account, purpose: Purpose
) -> str:
    """A new single-use link for `purpose`, put in the outbox and sent; returns its URL."""
    token = secrets.token_urlsafe(32)
    url = f"{settings.pages_url}{LINK_PATHS[purpose]}?token={token}"
    now = datetime.now(UTC)
    expires = now + LINK_LIFETIME[purpose]
    with i18n.using(found.locale):
        subject, body = _link_message(purpose, found, url, expires)
    note = NewNotification(
        key=f"account:{purpose}:{_digest(token).hex()[:32]}",
        user_id=str(found.id),
        kind=NotificationKind.account_link,
        subject=subject,
        body=body,
        created_at=now,
    )
    async with pool.acquire() as conn, conn.transaction():
        await account.add_link(conn, _digest(token), found.id, purpose, expires)
        await notifications.add(conn, [note])
    try:
        await notifications.deliver(pool, [note.key], sender_from_settings(settings))
    except Exception as exc:  # the row stays in the outbox: `deliver_pending` retries it
        log.warning("account link not sent yet", user_id=str(found.id), error=str(exc))
    if settings.env == "development" and not settings.smtp_host:
        # No mail relay in development: the log is the mailbox.
        log.info("account link", user_id=str(found.id), purpose=purpose, url=url)
    return url


def _link_message(purpose: Purpose, found: Account, url: str, expires: datetime) -> tuple[str, str]:
    until = i18n.when(expires, found.time_zone)
    if purpose == "confirm_email":
        subject = _("Confirm your e-mail address for grantflow")
        lead = _("Open this link to confirm your address and start applying:")
    elif purpose == "set_password":
        subject = _("You are invited to grantflow")
        lead = _("Open this link to choose your password:")
    else:
        subject = _("Reset your grantflow password")
        lead = _("Open this link to choose a new password. If you did not ask, ignore this.")
    greeting = _("Hello, %(name)s.", name=found.name)
    valid = _("The link works once, until %(until)s.", until=until)
    return subject, f"{greeting}\n\n{lead}\n{url}\n\n{valid}\n"


async def register(pool: asyncpg.Pool, settings: Settings, form: Registration) -> Account:
    """Create an applicant's account and send it a link to confirm its e-mail (anyone may).
    Invalid (on `email`) when the address already has an account."""
    password_hash = await _hash(form.password)
    try:
        async with pool.acquire() as conn:
            user_id = await account.create_applicant(
                conn,
                name=form.name,
                email=form.email,
                institution=form.institution,
                organisation_type=form.organisation_type,
                password_hash=password_hash,
                locale=form.locale,
                time_zone=form.time_zone,
            )
    except asyncpg.UniqueViolationError:
        raise _field_error("email", _("An account with this e-mail already exists.")) from None
    found = await account.by_id(pool, user_id)
    assert found is not None
    await account.add_event(pool, "registered", user_id=user_id, email=form.email)
    await _send_link(pool, settings, found, "confirm_email")
    return found


def _field_error(field: str, message: str) -> Invalid:
    return Invalid(message, [{"type": "value_error", "loc": [field], "msg": message}])


async def confirm_email(pool: asyncpg.Pool, token: str) -> Account:
    """Confirm the address a link was sent to (its holder). NotFound for an unknown, used or
    expired link."""
    user_id = await account.use_link(pool, _digest(token), "confirm_email")
    if user_id is None:
        raise NotFound(_("This link has expired or was already used."))
    await account.confirm_email(pool, user_id)
    await account.add_event(pool, "email_confirmed", user_id=user_id)
    found = await account.by_id(pool, user_id)
    assert found is not None
    return found


async def _throttle(pool: asyncpg.Pool, email: str, client_addr: str) -> None:
    until = await account.locked_until(
        pool, email, client_addr, THROTTLE_WINDOW, PER_ACCOUNT, PER_ADDRESS
    )
    if until is None:
        return
    retry_after = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    await account.add_event(
        pool,
        "sign_in_throttled",
        email=email,
        client_addr=client_addr,
        detail={"retry_after": retry_after},
    )
    minutes = math.ceil(retry_after / 60)
    raise Busy(
        i18n.ngettext(
            "Too many attempts to sign in. Try again in %(num)d minute.",
            "Too many attempts to sign in. Try again in %(num)d minutes.",
            minutes,
        ),
        retry_after=retry_after,
    )


async def sign_in(
    pool: asyncpg.Pool,
    settings: Settings,
    email: str,
    password: str,
    *,
    client_addr: str,
    user_agent: str | None = None,
) -> SignedIn:
    """Start a session for the account with this e-mail and password (anyone). Busy while
    the account or the client address has failed too often lately; Invalid for a wrong
    e-mail or password (which one is not said); Conflict before the e-mail is confirmed (a
    new link is sent)."""
    email = email.strip()
    await _throttle(pool, email, client_addr)
    found = await account.by_email(pool, email) if email else None
    ok = await _verify(password, found.password_hash if found else None)
    await account.add_attempt(pool, email, client_addr, ok)
    if not ok or found is None:
        await account.add_event(
            pool,
            "sign_in_failed",
            user_id=found.id if found else None,
            email=email,
            client_addr=client_addr,
        )
        raise Invalid(_("Wrong e-mail or password."))
    if not found.email_confirmed:
        await _send_link(pool, settings, found, "confirm_email")
        raise Conflict(
            _("Confirm your e-mail address first: we have sent you a new link to %(email)s.")
            % {"email": found.email}
        )
    session_id = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + SESSION_ABSOLUTE
    await account.add_session(
        pool, _digest(session_id), found.id, expires, client_addr, (user_agent or "")[:300]
    )
    await account.add_event(pool, "signed_in", user_id=found.id, client_addr=client_addr)
    return SignedIn(session_id=session_id, account=found)


async def session(pool: asyncpg.Pool, session_id: str) -> Account | None:
    """The account of a live session (not revoked, not idle too long, not past its end)."""
    if not session_id or len(session_id) > 100:
        return None
    return await account.session_account(pool, _digest(session_id), SESSION_IDLE)


async def sign_out(pool: asyncpg.Pool, session_id: str) -> None:
    """End this session (its holder)."""
    await account.revoke_session(pool, _digest(session_id))


async def sign_out_everywhere(pool: asyncpg.Pool, caller: Caller) -> int:
    """End every session of the caller's account, this one too; returns how many ended."""
    user_id = uuid.UUID(caller.actor.user_id)
    ended = await account.revoke_all(pool, user_id)
    await account.add_event(pool, "signed_out_everywhere", user_id=user_id, detail={"n": ended})
    return ended


async def request_password_reset(
    pool: asyncpg.Pool, settings: Settings, email: str, *, client_addr: str
) -> None:
    """Send a reset link to the address if it has an account (anyone). Says nothing about
    whether it has: the answer is the same either way."""
    found = await account.by_email(pool, email.strip())
    await account.add_event(
        pool,
        "password_reset_requested",
        user_id=found.id if found else None,
        email=email.strip(),
        client_addr=client_addr,
    )
    if found is not None:
        await _send_link(pool, settings, found, "reset_password")


async def check_link(pool: asyncpg.Pool, token: str, purpose: Purpose) -> None:
    """NotFound unless the link is unused and unexpired (it stays unused)."""
    if not await account.link_live(pool, _digest(token), purpose):
        raise NotFound(_("This link has expired or was already used."))


async def set_password(
    pool: asyncpg.Pool, token: str, purpose: Purpose, new_password: str
) -> Account:
    """Choose a password through an invitation or reset link (its holder). The link is used
    up; every session of the account ends (whoever knew the old password is signed out); the
    e-mail counts as confirmed, since the link came to it. NotFound for an unknown, used or
    expired link; Invalid for a password under 10 characters."""
    if not 10 <= len(new_password) <= 200:
        raise _field_error("password", _("Choose a password of at least 10 characters."))
    password_hash = await _hash(new_password)
    user_id = await account.use_link(pool, _digest(token), purpose)
    if user_id is None:
        raise NotFound(_("This link has expired or was already used."))
    await account.set_password(pool, user_id, password_hash)
    await account.confirm_email(pool, user_id)
    await account.revoke_all(pool, user_id)
    await account.add_event(pool, "password_set", user_id=user_id, detail={"by": purpose})
    found = await account.by_id(pool, user_id)
    assert found is not None
    return found


async def email_available(pool: asyncpg.Pool, email: str) -> None:
    """Invalid unless `email` is an address no account has yet."""
    if not _EMAIL.match(email.strip()):
        raise _field_error("email", _("Not an e-mail address."))
    if await account.by_email(pool, email.strip()) is not None:
        raise _field_error("email", _("An account with this e-mail already exists."))


async def invite(pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, email: str) -> str:
    """Give a staff member (made by `grantflow users create`) an e-mail and send it a link to
    set a password; returns the link. Invalid when the address is taken or malformed."""
    email = email.strip()
    if not _EMAIL.match(email):
        raise _field_error("email", _("Not an e-mail address."))
    try:
        await account.set_email(pool, user_id, email)
    except asyncpg.UniqueViolationError:
        raise _field_error("email", _("An account with this e-mail already exists.")) from None
    found = await account.by_id(pool, user_id)
    if found is None:
        raise NotFound("user not found")
    await account.add_event(pool, "invited", user_id=user_id, email=email)
    return await _send_link(pool, settings, found, "set_password")


async def set_preferences(pool: asyncpg.Pool, caller: Caller, prefs: Preferences) -> None:
    """The caller's language and time zone, remembered for every page and e-mail."""
    await account.set_preferences(
        pool, uuid.UUID(caller.actor.user_id), locale=prefs.locale, time_zone=prefs.time_zone
    )


async def set_locale(pool: asyncpg.Pool, caller: Caller, locale: str) -> None:
    """The caller's language (the switch on every page)."""
    if locale not in i18n.LOCALES:
        raise Invalid("unknown language")
    await account.set_preferences(pool, uuid.UUID(caller.actor.user_id), locale=locale)


async def set_demo_password(pool: Db, user_id: uuid.UUID, email: str, password: str) -> None:
    """A demo user's e-mail and password, confirmed (tests and benches)."""
    await set_demo_passwords(pool, [(user_id, email, password)])


async def set_demo_passwords(conn: Db, demo: Sequence[tuple[uuid.UUID, str, str]]) -> None:
    """Demo users' (id, e-mail, password), confirmed (`grantflow dev` on a fresh database).
    The passwords are hashed side by side (argon2 lets go of the GIL while it works): a fresh
    `grantflow dev` makes fourteen, a core-second or more one after the other."""
    hashes = await asyncio.gather(*(_hash(password) for *_ids, password in demo))
    for (user_id, email, _password), password_hash in zip(demo, hashes, strict=True):
        await account.set_email(conn, user_id, email)
        await account.set_password(conn, user_id, password_hash)
        await account.confirm_email(conn, user_id)


async def live_sessions(pool: asyncpg.Pool, caller: Caller) -> int:
    """How many sessions of the caller's account are live (its own settings page)."""
    return await account.live_sessions(pool, uuid.UUID(caller.actor.user_id))
