"""What the API adds for operators: `/metrics` (its requests, the domain's gauges, the
process) and, with tracing on, a span around every request."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)

from grantflow.observability import tracing
from grantflow.observability.domain import DomainGauges
from grantflow.observability.http import HttpMetrics, RequestMetrics
from grantflow.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Call after the app's own middleware: the request metrics (and the request's span) then
    wrap them all, so every answer is counted, a 500 from the last line of defence included."""
    if settings.metrics:
        _install_metrics(app, settings)
    if tracing.enabled(settings):
        tracing.install(app)


def _install_metrics(app: FastAPI, settings: Settings) -> None:
    # A registry per app, not the library's global one: two apps in one process (the tests,
    # the bench) each count their own requests.
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    domain = DomainGauges(registry, settings.metrics_cache_seconds)
    app.add_middleware(RequestMetrics, metrics=HttpMetrics(registry))

    async def metrics(request: Request) -> Response:
        await domain.refresh(request.app.state.resources.pool)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # For Prometheus, not for API clients: outside the OpenAPI.
    app.add_route("/metrics", metrics, include_in_schema=False)
