"""The FastAPI application: routes, error mapping, request ids, body limits, input guard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from grantflow import pages
from grantflow.api import errors
from grantflow.api.context import RequestContext
from grantflow.api.guard import InputGuard
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
from grantflow.api.throttle import RefusalThrottle
from grantflow.db import create_pool
from grantflow.observability import api as observability
from grantflow.observability import tracing
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.temporal import connect

DESCRIPTION = """
grantflow runs innovation grants from application to final report as durable workflows.

Every request carries `Authorization: Bearer <token>` (tokens come from
`grantflow users create`; they expire, after 90 days by default, and admins revoke or rotate
them with `grantflow users token`). Refusals are 401 (no, bad, expired or revoked token, with
the reason), 403 (wrong role), 404 (not found or not yours), 409 (not possible in the current
stage, with the reason), 413 (body too large), 422 (invalid input, every field error listed;
NUL characters, lone surrogates and non-finite numbers are refused wherever they are), 429
(too many changes to one object in flight, or too many refused tokens from one address: retry
after `Retry-After` seconds), 503 (a server is down, or no worker is processing: retry). An
unexpected error is a 500 whose body carries the `request_id` (also in the `X-Request-Id`
header) to quote when you report it.
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
            client = await connect(
                resolved.temporal_address,
                resolved.temporal_namespace,
                interceptors=tracing.client_interceptors(resolved),
            )
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
        # None of FastAPI's own telemetry (newer FastAPI makes spans whenever a tracer
        # provider is set): the request's one span is grantflow's (tracing.ServerSpan, with
        # tracing on), its metrics the Prometheus middleware's.
        telemetry={
            "tracing": False,
            "operation_spans": False,
            "metrics": False,
            "logs": False,
        },
    )
    if resources is not None:
        app.state.resources = resources
    app.state.refusals = RefusalThrottle()  # refused bearer tokens, per client address
    errors.install(app)
    # The last added runs first: the request id and the 500 safety net around everything,
    # then the size limit (counting the bytes received, so a chunked body is limited too),
    # then the guard, which reads the body the limit has already bounded.
    app.add_middleware(InputGuard)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    observability.install(app, settings)  # /metrics, and around everything the above
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
    return app
