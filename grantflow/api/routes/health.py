"""Liveness of the two servers grantflow depends on."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from grantflow.api.deps import Res
from grantflow.services import health

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "Temporal or Postgres is down."}})
async def healthz(res: Res) -> JSONResponse:
    """`ok` for each of Temporal and Postgres, or the reason it is not (then 503)."""
    found = await health.check(res)
    return JSONResponse(found.as_json(), status_code=200 if found.healthy else 503)
