"""The asyncpg pool: made once by each process and handed down."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool, beyond asyncpg's rollback of an
    open transaction: nothing. grantflow leaves no session state behind (no SET, LISTEN,
    cursors or session advisory locks; its advisory locks are transaction-scoped), so asyncpg's
    default reset (`RESET ALL`, `UNLISTEN *`, ...) would cost a round trip per borrow for
    nothing."""


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    init: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]] | None = None,
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        reset=_keep_session,
        init=init,
    )
    assert pool is not None
    return pool
