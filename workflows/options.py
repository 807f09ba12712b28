"""Activity options shared by the workflows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

# Database writes: short, idempotent, retried until Postgres is back (no maximum attempts).
# A deadline already past still gets a timer (of this length), so the wait stays one code path.
MIN_WAIT = timedelta(milliseconds=1)
WRITE_TIMEOUT = timedelta(seconds=30)
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


async def write(
    activity: Callable[[S, T], Awaitable[R]], arg: T, *, local_from: str | None = None
) -> R:
    """Run one of the workflow's database writes, with the one timeout and retry policy.

    In runs that took the patch `local_from` it is a local activity: a short write the workflow
    waits on needs no activity task of its own nor a workflow task to resume after it (about
    five history events and as many server round trips less per write), and it is retried the
    same way. Runs recorded before that patch, and writes without one, are ordinary
    activities, so their histories still replay."""
    if local_from is not None and workflow.patched(local_from):
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY
        )
    return await workflow.execute_activity_method(
        activity, arg, start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY
    )
