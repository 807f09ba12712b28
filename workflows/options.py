"""Activity options shared by the workflows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

# A deadline already past still gets a timer (of this length), so the wait stays one code path.
MIN_WAIT = timedelta(milliseconds=1)
# Database writes: short and idempotent, so retried through an outage of PostgreSQL, but not
# forever. Pauses of 0.2, 0.4, ... 6.4 s, then 10 s each: 180 attempts wait 12.6 + 173 x 10 s,
# about 29 minutes (longer still when attempts hang until WRITE_TIMEOUT), so a restart or a
# failover of a minute or two (tests/test_fault_servers.py restarts PostgreSQL mid-lifecycle)
# is ridden out many times over, and the 10 s cap keeps the wait after it short. What is
# retried here is an outage or a bug: a write refused for its data fails at once, non-retryable
# (activities.refuses_bad_data), and a serialisation failure or a deadlock is run again inside
# the attempt (grantflow.store.in_transaction). After the last attempt the activity fails and
# so does the workflow's step: visible in its history instead of retried unseen.
WRITE_TIMEOUT = timedelta(seconds=30)
WRITE_ATTEMPTS = 180
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=WRITE_ATTEMPTS,
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
