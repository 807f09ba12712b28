"""The asyncpg pool: made once by each process and handed down."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext

# A statement that has not answered in this long is on a server that hangs (or drowns): it
# fails with TimeoutError, which the API answers as 503, instead of holding its caller.
COMMAND_TIMEOUT = 30.0
# Waiting for a free connection, connecting a new one, and handing one back after a timed-out
# statement (asyncpg waits for the server to take the cancel) are bounded by this, for the
# same reason: a hung server must never hold a request or an activity for good.
ACQUIRE_TIMEOUT = 10.0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool, beyond asyncpg's rollback of an
    open transaction: nothing. grantflow leaves no session state behind (no SET, LISTEN,
    cursors or session advisory locks; its advisory locks are transaction-scoped), so asyncpg's
    default reset (`RESET ALL`, `UNLISTEN *`, ...) would cost a round trip per borrow for
    nothing."""


class Pool(asyncpg.Pool):
    """asyncpg's pool, whose `acquire()` (and so `fetch()`, `execute()`...) waits at most
    `acquire_timeout` unless told otherwise: asyncpg's own waits for good."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float = COMMAND_TIMEOUT,
    acquire_timeout: float = ACQUIRE_TIMEOUT,
    init: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]] | None = None,
) -> asyncpg.Pool:
    # asyncpg.create_pool with our class: it builds a Pool with these same arguments.
    pool = Pool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        command_timeout=command_timeout,
        acquire_timeout=acquire_timeout,
        reset=_keep_session,
        init=init,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
    )
    await pool
    return pool
