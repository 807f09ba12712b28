"""Liveness of the two servers grantflow depends on: anyone may ask, no token needed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from grantflow.services.context import Resources

TIMEOUT = 3  # seconds: a load balancer's probe must not hang on a dead server


@dataclass(frozen=True)
class Health:
    """`ok` for each server, or the reason it is not."""

    temporal: str
    postgres: str

    @property
    def healthy(self) -> bool:
        return self.temporal == "ok" and self.postgres == "ok"

    def as_json(self) -> dict[str, str]:
        status = "ok" if self.healthy else "unavailable"
        return {"status": status, "temporal": self.temporal, "postgres": self.postgres}


async def check(res: Resources) -> Health:
    """Ask Temporal and PostgreSQL at once, each within a few seconds. Never refuses: a
    server that is down is reported, not raised."""
    temporal, postgres = await asyncio.gather(_temporal(res), _postgres(res))
    return Health(temporal=temporal, postgres=postgres)


async def _temporal(res: Resources) -> str:
    try:
        await asyncio.wait_for(res.client.service_client.check_health(), timeout=TIMEOUT)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


async def _postgres(res: Resources) -> str:
    try:
        async with asyncio.timeout(TIMEOUT), res.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"
