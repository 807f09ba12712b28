"""Liveness of the two servers grantflow depends on."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from grantflow.api.deps import Res

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "Temporal or Postgres is down."}})
async def healthz(res: Res) -> JSONResponse:
    """`ok` for each of Temporal and Postgres, or the reason it is not (then 503)."""
    checks = {"temporal": _temporal(res), "postgres": _postgres(res)}
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    healthy = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", **results},
        status_code=200 if healthy else 503,
    )


async def _temporal(res: Res) -> str:
    try:
        await asyncio.wait_for(res.client.service_client.check_health(), timeout=3)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


async def _postgres(res: Res) -> str:
    try:
        async with asyncio.timeout(3), res.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"
