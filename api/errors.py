"""Every refusal is a clear status with a reason; an outage is a 503, never a 500."""

from __future__ import annotations

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

log = structlog.get_logger(__name__)

_UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


def _detail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def refused_update(exc: WorkflowUpdateFailedError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)


def install(app: FastAPI) -> None:
    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update_refused(_: Request, exc: WorkflowUpdateFailedError) -> JSONResponse:
        return _detail(409, refused_update(exc))

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return _detail(404, "not found")
        if exc.status in _UNAVAILABLE:
            log.warning("temporal unavailable", error=str(exc))
            return _detail(503, "the workflow service is unavailable; try again shortly")
        log.error("temporal error", error=str(exc), status=exc.status)
        return _detail(502, f"the workflow service refused the request: {exc.message}")

    # PostgreSQL unreachable, starting, shutting down or restarted under an open connection
    # (08xxx, 57xxx, and asyncpg's state errors on a connection the server dropped mid-query).
    @app.exception_handler(OSError)
    @app.exception_handler(asyncpg.exceptions.InterfaceError)
    @app.exception_handler(asyncpg.exceptions.InternalClientError)
    @app.exception_handler(asyncpg.exceptions.PostgresConnectionError)
    @app.exception_handler(asyncpg.exceptions.OperatorInterventionError)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", error=str(exc))
        return _detail(503, "the database is unavailable; try again shortly")
