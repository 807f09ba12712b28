"""The API's requests for Prometheus: counted and timed by route template, method and status.

The route is the template the request matched (`/v1/applications/{application_id}`), never the
raw path: one series per route, however many applications there are. A request that matched
no route (a scanner's guesses) counts under `unmatched`."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# From 5 ms (a page from memory) to 30 s (an Update waiting out a busy worker): the p99 the
# dashboard draws is read between two of these bounds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    """The request counter and latency histogram, in the registry the app's /metrics serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter(
            "grantflow_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels,
            registry=registry,
        )
        self.duration = Histogram(
            "grantflow_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            labels,
            buckets=BUCKETS,
            registry=registry,
        )
        # Each label set's children, looked up once: `labels()` validates, locks and builds
        # its key on every call. Bounded as the series are: routes x methods x statuses.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            code = str(status)
            children = self._children[key] = (
                self.requests.labels(method, route, code),
                self.duration.labels(method, route, code),
            )
        children[0].inc()
        children[1].observe(seconds)


def route_template(scope: Scope) -> str:
    """The template of the route the router matched (it leaves it in the scope), else
    `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestMetrics:
    """Pure ASGI middleware: outside the app's own, so a 500 from the last line of defence and
    a 413 from the size limit are counted too."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # an answer never started is what the client sees as a failure

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(
                scope.get("method", "GET"),
                route_template(scope),
                status,
                time.perf_counter() - began,
            )
