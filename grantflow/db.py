"""The asyncpg pool: made once by each process and handed down."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg


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
        init=init,
    )
    assert pool is not None
    return pool
