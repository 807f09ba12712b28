"""Every side effect of the lifecycle. Each activity is idempotent: its docstring says why.

Every write runs in `grantflow.store.in_transaction` (run again when PostgreSQL aborts it for
concurrency) and is `@refuses_bad_data`: a write PostgreSQL refuses for its data fails at once,
visibly, instead of being retried until someone notices."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from grantflow.notify import Sender
from grantflow.store import Conn, in_transaction, notifications, refusal
from grantflow.store.application import flag_refused
from schemas.notifications import NewNotification

log = structlog.get_logger(__name__)

# The type of the ApplicationError a write refused for its data fails with (non-retryable).
WRITE_REFUSED = "WriteRefused"


def workflow_id() -> str:
    """The id of the workflow that scheduled the running activity."""
    found = activity.info().workflow_id
    if not found:
        raise RuntimeError("grantflow's activities run only on behalf of a workflow")
    return found


class _Writer(Protocol):
    _pool: asyncpg.Pool


W = TypeVar("W", bound=_Writer)
A = TypeVar("A")
R = TypeVar("R")


def refuses_bad_data(write: Callable[[W, A], Awaitable[R]]) -> Callable[[W, A], Awaitable[R]]:
    """A write activity whose data PostgreSQL refuses (`grantflow.store.refusal`: a value out of
    range, a NUL in text, a broken constraint) fails with a non-retryable
    `ApplicationError(type=WRITE_REFUSED)` after its first attempt: running it again would be
    refused again, forever and silently. On its way out it logs an error (the activity, the
    workflow, the reason) and puts the application it is about in the admins' flagged queue
    with that reason. Any other error goes up as it is, for the activity's retry policy."""

    @functools.wraps(write)
    async def refusing(self: W, arg: A) -> R:
        try:
            return await write(self, arg)
        except Exception as exc:
            why = refusal(exc)
            if why is None:
                raise
            raise await _refused(self._pool, arg, why) from exc

    return refusing


async def _refused(pool: asyncpg.Pool, arg: object, why: str) -> ApplicationError:
    info = activity.info()
    message = f"{info.activity_type}: PostgreSQL refused the write: {why}"
    application_id = _application_of(arg)
    flagged = False
    if application_id is not None:
        reason = (
            f"A change was refused by the database and is not on record "
            f"({info.activity_type}, workflow {info.workflow_id}): {why}"
        )
        try:
            flagged = await in_transaction(
                pool,
                lambda conn: flag_refused(conn, application_id, reason, datetime.now(UTC)),
                single_statement=True,
            )
        except Exception:  # the refusal still goes up; the log says the flag is missing
            log.exception("could not flag the application", application_id=application_id)
    log.error(
        "write refused",
        activity=info.activity_type,
        workflow_id=info.workflow_id,
        application_id=application_id,
        flagged=flagged,
        reason=why,
    )
    return ApplicationError(message, type=WRITE_REFUSED, non_retryable=True)


def _application_of(arg: object) -> str | None:
    """The application a write is about, where its input names one (directly, in the state it
    saves, or in the vote it records)."""
    for holder in (arg, getattr(arg, "state", None), getattr(arg, "vote", None)):
        found = getattr(holder, "application_id", None)
        if isinstance(found, str):
            return found
    return None


class Recorder:
    """Activities bound to the worker's pool and notification sender: a record activity
    writes its change and the notifications it causes in one transaction, then delivers them
    (at least once, each keyed: a retried activity finds those already sent marked)."""

    def __init__(self, pool: asyncpg.Pool, sender: Sender) -> None:
        self._pool = pool
        self._sender = sender

    async def _record(self, write: Callable[[Conn], Awaitable[list[NewNotification]]]) -> None:
        notes = await in_transaction(self._pool, write)
        await self._deliver([n.key for n in notes])

    async def _deliver(self, keys: list[str]) -> None:
        if keys:
            await notifications.deliver(self._pool, keys, self._sender)
