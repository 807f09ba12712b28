"""Activity options shared by the workflows."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Database writes: short, idempotent, retried until Postgres is back (no maximum attempts).
WRITE_TIMEOUT = timedelta(seconds=30)
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
