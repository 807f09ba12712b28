"""Liveness of the two servers grantflow depends on, and the probes an orchestrator asks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from grantflow.api.deps import Res
from grantflow.services import health

router = APIRouter(tags=["health"])
DOWN: dict[int | str, dict[str, Any]] = {503: {"description": "Temporal or Postgres is down."}}


@router.get("/healthz", responses=DOWN)
async def healthz(res: Res) -> JSONResponse:
    """`ok` for each of Temporal and Postgres, or the reason it is not (then 503)."""
    found = await health.check(res)
    return JSONResponse(found.as_json(), status_code=200 if found.healthy else 503)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process answers: `{"status": "ok"}`, whatever the servers behind it. An
    orchestrator restarts the process when this fails, so it asks nothing else: a database
    that is down is no reason to restart every API process."""
    return {"status": "ok"}


@router.get("/readyz", responses=DOWN)
async def readyz(res: Res) -> JSONResponse:
    """Whether this process can serve requests: Temporal and PostgreSQL both answer (`ok`
    each). Otherwise 503, with the reason beside the one that does not; an orchestrator or a
    load balancer then sends it no traffic until both answer again."""
    found = await health.check(res)
    return JSONResponse(found.as_json(), status_code=200 if found.healthy else 503)
