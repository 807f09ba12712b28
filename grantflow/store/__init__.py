"""Plain, parameterised SQL: one module per table group, the asyncpg connection passed in.

Every module-level constant whose name ends in `_SQL` is a statement the code runs;
tests/test_migrations.py prepares each against a freshly migrated database."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: what writes in a transaction take.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# Or the pool itself, for a single statement: it borrows a connection for that statement only,
# so a request never holds one while it waits on Temporal.
Db: TypeAlias = Conn | asyncpg.Pool
T = TypeVar("T")

# 40001 and 40P01.
RETRIED = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)
TRANSACTION_ATTEMPTS = 8


async def in_transaction(
    pool: asyncpg.Pool,
    work: Callable[[Conn], Awaitable[T]],
    *,
    attempts: int = TRANSACTION_ATTEMPTS,
) -> T:
    """`work` in a transaction of its own, run again from the start when PostgreSQL aborts it
    as a serialisation failure (40001) or a deadlock victim (40P01).

    Concurrent writers on one programme (votes, approvals, payments) may be aborted so that the
    outcome stays that of some serial order: under SERIALIZABLE isolation (an operator may set it
    as the database default) and whenever two transactions lock rows in opposite orders. The
    aborted transaction wrote nothing, so running it again is safe; `work` must have no effect
    outside the connection. Bounded, with a growing jittered pause, so that writers that keep
    colliding spread out; after the last attempt the error goes up (the activity's own retry
    policy takes over)."""
    for attempt in range(1, attempts + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except RETRIED:
            if attempt == attempts:
                raise
            # Jitter, not security: colliding writers must not retry in lockstep.
            await asyncio.sleep(0.005 * 2**attempt * (0.5 + random.random()))  # noqa: S311
    raise AssertionError("unreachable")
