"""Plain, parameterised SQL: one module per table group, the asyncpg connection passed in.

Every module-level constant whose name ends in `_SQL` is a statement the code runs;
tests/test_migrations.py prepares each against a freshly migrated database.

Every write goes through `in_transaction`, the one place that runs a transaction again when
PostgreSQL aborts it for concurrency; `refusal` tells a write refused for its data, which no
attempt will get through."""

import asyncio
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeAlias, TypeVar

import asyncpg
import structlog
from asyncpg.exceptions import _base as asyncpg_base
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: what writes in a transaction take.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# Or the pool itself, for a single statement: it borrows a connection for that statement only,
# so a request never holds one while it waits on Temporal.
Db: TypeAlias = Conn | asyncpg.Pool
# Told apart from a pool by these classes, so that a stand-in for a pool (tests wrap one to
# inject a race) is taken as a pool.
CONNECTIONS = (asyncpg.Connection, PoolConnectionProxy)
T = TypeVar("T")

log = structlog.get_logger(__name__)

# 40001 and 40P01.
RETRIED = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)
TRANSACTION_ATTEMPTS = 8
# Transactions PostgreSQL aborted as a serialisation failure or a deadlock victim, by SQLSTATE,
# since the process started (each abort counted once, whether or not it was run again): how
# an operator, or a test, sees that the retry is doing work.
ABORTED: Counter[str] = Counter()


async def in_transaction(
    db: Db,
    work: Callable[[Conn], Awaitable[T]],
    *,
    attempts: int = TRANSACTION_ATTEMPTS,
    single_statement: bool = False,
) -> T:
    """`work` in a transaction of its own, run again from the start when PostgreSQL aborts it
    as a serialisation failure (40001) or a deadlock victim (40P01).

    Concurrent writers on one programme (votes, approvals, payments) may be aborted so that the
    outcome stays that of some serial order: under SERIALIZABLE isolation (an operator may set it
    as the database default) and whenever two transactions lock rows in opposite orders. The
    aborted transaction wrote nothing, so running it again is safe; `work` must have no effect
    outside the connection. Bounded, with a growing jittered pause, so that writers that keep
    colliding spread out; after the last attempt the error goes up (the activity's own retry
    policy, bounded too, takes over).

    `db` is a pool (a connection is borrowed per attempt) or a connection. A connection already
    in a transaction runs `work` once in a savepoint: only the owner of the outer transaction
    can run it again from its start. `single_statement`: `work` runs one statement, which
    PostgreSQL makes a transaction of its own; BEGIN and COMMIT would be two round trips more."""
    if isinstance(db, CONNECTIONS) and db.is_in_transaction():
        async with db.transaction():
            return await work(db)
    for attempt in range(1, attempts + 1):
        try:
            return await _once(db, work, single_statement)
        except RETRIED as exc:
            ABORTED[exc.sqlstate] += 1
            if attempt == attempts:
                raise
            log.info("transaction run again", sqlstate=exc.sqlstate, attempt=attempt)
            # Jitter, not security: colliding writers must not retry in lockstep.
            await asyncio.sleep(0.005 * 2**attempt * (0.5 + random.random()))  # noqa: S311
    raise AssertionError("unreachable")


async def _once(db: Db, work: Callable[[Conn], Awaitable[T]], single_statement: bool) -> T:
    async with _connection(db) as conn:
        if single_statement:
            return await work(conn)
        async with conn.transaction():
            return await work(conn)


@asynccontextmanager
async def _connection(db: Db) -> AsyncIterator[Conn]:
    if isinstance(db, CONNECTIONS):
        yield db
    else:
        async with db.acquire() as conn:
            yield conn


# Bad data: refused again however often it is written. Class 22 (a value out of range, a NUL
# or another character the encoding lacks, bad input syntax), class 23 (a NOT NULL, foreign
# key or CHECK violation), and asyncpg's own refusal to encode an argument (an int beyond
# bigint). A unique violation is not among them: the idempotent writes' ON CONFLICT paths
# absorb their own keys, and one on another key is two writers racing, which the next attempt
# finds settled.
_REFUSED_FOR_DATA = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg_base.DataError,
)
# asyncpg quotes the refused argument; what it was is no one's business in a log.
_ARGUMENT = re.compile(r"(invalid input for query argument \$\d+): .*?(\([^()]*\))?$", re.S)


def refusal(exc: BaseException) -> str | None:
    """Why PostgreSQL (or asyncpg) refused a write for its data, or None when `exc` is not such
    a refusal (an outage, a conflict, a bug): the reason an admin reads, without the value."""
    if not isinstance(exc, _REFUSED_FOR_DATA) or isinstance(
        exc, asyncpg.exceptions.UniqueViolationError
    ):
        return None
    if isinstance(exc, asyncpg.PostgresError):
        return f"{exc.sqlstate} {type(exc).__name__}: {exc}"
    found = _ARGUMENT.match(str(exc))
    said = " ".join(p for p in found.groups() if p) if found else "invalid input"
    return f"{type(exc).__name__}: {said}"
