"""Every refusal is a clear status with a reason; an outage is a 503, never a 500."""

from __future__ import annotations

import errno
import json
import socket
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from grantflow.pages import web
from grantflow.services.errors import (
    Busy,
    Invalid,
    ServiceError,
    Unavailable,
    from_temporal,
)
from schemas.common import ApiError, InvalidInput

log = structlog.get_logger(__name__)

# What any route may answer besides its own statuses, documented once for the whole API.
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiError, "description": "The body is not JSON (or not UTF-8)."},
    401: {"model": ApiError, "description": "No bearer token, or not a valid one."},
    403: {"model": ApiError, "description": "Your role may not do this."},
    413: {"model": ApiError, "description": "The body is over the size limit."},
    422: {"model": InvalidInput, "description": "Invalid input: every field error, or why."},
    429: {
        "model": ApiError,
        "description": "Too many changes to this object in flight; retry after `Retry-After` s.",
    },
    503: {"model": ApiError, "description": "Temporal or PostgreSQL is unavailable."},
}


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _refusal(exc: ServiceError) -> JSONResponse:
    if isinstance(exc, Busy):
        return _detail(exc.status, exc.message, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Invalid) and exc.errors:
        return JSONResponse({"detail": exc.errors}, status_code=exc.status)
    if isinstance(exc, Unavailable):
        log.warning("unavailable", error=exc.message)
    return _detail(exc.status, exc.message)


def _echo(value: Any) -> Any:
    """The refused value as JSON, or None when it cannot be written as JSON (a non-finite
    number, a lone surrogate): the error's type and loc say enough."""
    try:
        encoded = jsonable_encoder(value)
        json.dumps(encoded, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, TypeError):
        return None
    return encoded


def validation_answer(exc: RequestValidationError) -> Response:
    """FastAPI's own 422 body, except that a value that cannot be written as JSON is not
    echoed (FastAPI's answer failed to serialise it: a 500 for the caller's mistake), bytes
    that are not UTF-8 are shown with replacement characters, and every name is ASCII-escaped
    (a field name may hold a lone surrogate)."""
    errors = [
        {**e, "input": _echo(e["input"])} if "input" in e else e
        for e in jsonable_encoder(exc.errors(), custom_encoder={bytes: _bytes})
    ]
    body = json.dumps({"detail": errors}, allow_nan=False, default=str, separators=(",", ":"))
    return Response(body, status_code=422, media_type="application/json")


def _bytes(value: bytes) -> str | None:
    return value.decode(errors="replace")


def _allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """Every method some route serves at this path, not just the first route's."""
    methods = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
    return [
        m
        for m in methods
        if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in app.router.routes)
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return validation_answer(exc)

    # An address no route serves: a page in the reader's language, but under /v1 (and for
    # the files and the docs) the API's JSON.
    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> Response:
        if web.is_page(request):
            return await web.page_error(request, 404, {})
        assert isinstance(exc, HTTPException)
        return await http_exception_handler(request, exc)

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, _: Exception) -> Response:
        # Starlette answers with the Allow of the first route matching the path only, so
        # `OPTIONS /v1/programmes` said `Allow: POST` although GET is there too.
        allowed = {"Allow": ", ".join(_allowed_methods(app, request.scope))}
        if web.is_page(request):
            return await web.page_error(request, 405, allowed)
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=allowed)

    @app.exception_handler(ServiceError)
    async def _service_refused(_: Request, exc: ServiceError) -> JSONResponse:
        return _refusal(exc)

    # A service that did not wrap its Temporal call still answers the same refusals.
    @app.exception_handler(WorkflowUpdateFailedError)
    @app.exception_handler(RPCError)
    async def _temporal(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WorkflowUpdateFailedError | RPCError)
        mapped = from_temporal(exc)
        if mapped is not None:
            return _refusal(mapped)
        assert isinstance(exc, RPCError)
        log.error("temporal error", error=str(exc), status=exc.status)
        return _detail(502, f"the workflow service refused the request: {exc.message}")

    # PostgreSQL unreachable, starting, shutting down or restarted under an open connection
    # (08xxx, 57xxx, and asyncpg's state errors on a connection the server dropped mid-query).
    @app.exception_handler(asyncpg.exceptions.InterfaceError)
    @app.exception_handler(asyncpg.exceptions.InternalClientError)
    @app.exception_handler(asyncpg.exceptions.PostgresConnectionError)
    @app.exception_handler(asyncpg.exceptions.OperatorInterventionError)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", error=str(exc))
        return _detail(503, DATABASE_DOWN)

    # Only the OSErrors of a connection that cannot be made or was lost: any other (a file, a
    # bad argument) is a bug, and a 503 would hide it. A TimeoutError (an OSError too) is a
    # statement or a wait for a connection over grantflow.db's bounds: a hung database.
    @app.exception_handler(OSError)
    async def _connection(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OSError)
        if isinstance(exc, TimeoutError):
            log.warning("database timed out", error=repr(exc))
            return _detail(503, DATABASE_HUNG)
        if not _lost_connection(exc):
            raise exc
        log.warning("database unavailable", error=str(exc))
        return _detail(503, DATABASE_DOWN)


DATABASE_DOWN = "the database is unavailable; try again shortly"
DATABASE_HUNG = "the database did not answer in time; try again shortly"
_CONNECTION_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EADDRNOTAVAIL,
}


def _lost_connection(exc: OSError) -> bool:
    """Refused, reset, unreachable or unresolvable; asyncio reports a host name whose every
    address refused as one plain OSError, "Multiple exceptions: ..."."""
    return (
        isinstance(exc, ConnectionError | socket.gaierror)
        or exc.errno in _CONNECTION_ERRNOS
        or str(exc).startswith("Multiple exceptions: ")
    )
