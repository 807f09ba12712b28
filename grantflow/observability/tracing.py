"""Traces with OpenTelemetry, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.

One trace follows a request: the HTTP span (`ServerSpan`), then the
workflow and activity spans (`temporal_spans.TemporalSpans`, whose context travels in the
workflow's and the activities' headers), and, when `GRANTFLOW_TRACE_SQL` asks for them, every
SQL statement under them (asyncpg's instrumentation). The log lines written inside a span
carry its `trace_id` and `span_id` (`add_trace_ids`), so a line leads to its trace.

Every request is traced unless a sampler says otherwise: the SDK's default sampler is
`parentbased_always_on`, and it reads `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
itself (`parentbased_traceidratio` and `0.1` keep one trace in ten, whole). Spans leave the
request's path in batches (`BatchSpanProcessor`, a thread of its own): no request waits for
the collector. A span costs CPU on the request's path all the same, which is why SQL spans,
a dozen per submission, are off unless asked for.

The packages come with `pip install 'grantflow[tracing]'`; they are imported only when tracing
is on, so a process without them runs as before."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grantflow.observability.http import route_template
from grantflow.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.client import Interceptor

try:  # the API alone, without the tracing extra: every log line is read without it
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - the test extra installs it
    _trace = None  # type: ignore[assignment]
    _propagate = None  # type: ignore[assignment]

MISSING = (
    "tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT is set) but its packages are not installed: "
    "pip install 'grantflow[tracing]'"
)


def enabled(settings: Settings) -> bool:
    return bool(settings.otlp_endpoint)


def start(settings: Settings, service: str, exporter: SpanExporter | None = None) -> None:
    """Send this process's spans to the collector (once per process; the provider is global,
    as the instrumentations look it up). `exporter` replaces the OTLP one (tests, benches)."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(MISSING) from exc
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name or f"grantflow-{service}"})
    )
    # The endpoint as the settings read it (a .env file too), with the path OTLP/HTTP gives
    # traces; OTEL_EXPORTER_OTLP_HEADERS and the like the exporter reads itself.
    endpoint = f"{(settings.otlp_endpoint or '').rstrip('/')}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint)))
    trace.set_tracer_provider(provider)
    if settings.trace_sql:
        instrument_sql(provider)


def instrument_sql(provider: TracerProvider | None = None) -> None:
    """A span per statement on every asyncpg connection of the process."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def uninstrument_sql() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def client_interceptors(settings: Settings) -> Sequence[Interceptor]:
    """The Temporal client's interceptors: with tracing on, `TemporalSpans`, which the worker
    made from that client uses too (workflow and activity spans)."""
    if not enabled(settings):
        return ()
    from grantflow.observability.temporal_spans import TemporalSpans

    return (TemporalSpans(),)


def install(app: FastAPI) -> None:
    """A server span around each request, outside every middleware added before."""
    app.add_middleware(ServerSpan)


class ServerSpan:
    """Pure ASGI middleware: one SERVER span per HTTP request, continuing the caller's trace
    when its `traceparent` header carries one, named `METHOD /route/{template}` as its answer
    starts (the router has matched by then; the raw path would be one name per application)
    and ended with the answer's last byte. Nothing else: OpenTelemetry's ASGI middleware also
    collected a dozen attributes and recorded metrics of its own on every request, which the
    Prometheus middleware already counts."""

    def __init__(self, app: ASGIApp) -> None:
        # Installed only with tracing on, so with its packages.
        from opentelemetry.instrumentation.asgi import asgi_getter

        self.app = app
        self.headers = asgi_getter  # reads `traceparent` and `tracestate` from the scope
        # A proxy until the process sets its provider, then the provider's own tracer.
        self.tracer = _trace.get_tracer(__name__) if _trace is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _trace is None or self.tracer is None:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "HTTP")
        # The getter is typed for a dict; it reads the scope through `get` alone.
        parent = _propagate.extract(cast(dict[str, Any], scope), getter=self.headers)
        with self.tracer.start_as_current_span(
            method,
            context=parent,
            kind=_trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as span:

            async def naming(message: Message) -> None:
                if message["type"] == "http.response.start" and span.is_recording():
                    route = route_template(scope)
                    status = int(message["status"])
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(_trace.Status(_trace.StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, naming)


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace and span ids, when there is one."""
    if _trace is None:
        return event
    context = _trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event
