"""The FastAPI application: routes, error mapping, request ids, body limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from grantflow import pages
from grantflow.api import errors
from grantflow.api.limits import BodyLimit
from grantflow.api.routes import (
    admin,
    agreement,
    application,
    council,
    exports,
    health,
    inspect,
    notifications,
    pilot,
    programme,
    review,
    users,
)
from grantflow.db import create_pool
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.temporal import connect

DESCRIPTION = """
grantflow runs innovation grants from application to final report as durable workflows.

Every request carries `Authorization: Bearer <token>` (tokens come from
`grantflow users create`). Refusals are 401 (no or bad token), 403 (wrong role),
404 (not found or not yours), 409 (not possible in the current stage, with the reason),
413 (body too large), 422 (invalid input, every field error listed), 429 (too many changes
to one object in flight: retry after `Retry-After` seconds), 503 (a server is down).
"""


def create_app(settings: Settings, resources: Resources | None = None) -> FastAPI:
    """The app. Tests pass `resources`; otherwise the lifespan makes the pool and client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resources is not None:
            app.state.resources = resources
            yield
            return
        resolved = settings.resolved()
        assert resolved.database_url and resolved.temporal_address
        pool = await create_pool(resolved.database_url)
        try:
            client = await connect(resolved.temporal_address, resolved.temporal_namespace)
            app.state.resources = Resources(resolved, pool, client)
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="grantflow",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=errors.RESPONSES,
    )
    if resources is not None:
        app.state.resources = resources
    errors.install(app)
    # Counts the bytes received, so a chunked body without Content-Length is limited too.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for module in (
        health,
        users,
        notifications,
        programme,
        application,
        review,
        council,
        agreement,
        pilot,
        admin,
        exports,
        inspect,
    ):
        app.include_router(module.router)
    # The pages for people (`/`, `/sign-in`, `/applications/...`), outside the OpenAPI.
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")

    @app.middleware("http")
    async def context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id[:64])
        response = await call_next(request)
        response.headers["x-request-id"] = request_id[:64]
        return response

    return app
