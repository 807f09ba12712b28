"""One trace per request, as an operator follows it in a trace viewer: the HTTP request, the
Temporal client's call, the workflow, its activities and their SQL statements, parent to child;
and the log lines written on the way carry the trace's id."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.observability import temporal_spans, tracing
from grantflow.services.context import Resources
from grantflow.settings import Settings
from schemas.common import Role
from tests.conftest import application_body, eventually, fresh_database, programme_body
from tests.support import make_user
from workers.main import build_worker
from workflows import ids

pytestmark = pytest.mark.system


@dataclass
class Traced:
    api: httpx.AsyncClient
    pool: Any
    exporter: InMemorySpanExporter
    client: Client


@pytest.fixture(scope="session")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (it can be set once) keeping spans in memory; SQL spans
    only while a traced test runs, so the rest of the session pays nothing."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    yield memory


@pytest_asyncio.fixture(loop_scope="session")
async def traced(
    exporter: InMemorySpanExporter, postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Traced]:
    """A stack of its own with tracing on, as OTEL_EXPORTER_OTLP_ENDPOINT turns it on: the
    app's request spans, the client's (and so its worker's) interceptor, SQL spans."""
    url = await fresh_database(postgres.url, f"traced_{uuid.uuid4().hex[:8]}")
    settings = Settings(
        task_queue=f"tq-traced-{uuid.uuid4()}",
        database_url=url,
        temporal_address="unused-in-process",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",  # never reached: spans stay here
    )
    config = temporal_env.client.config()
    config["interceptors"] = tracing.client_interceptors(settings)
    client = Client(**config)
    pool = await create_pool(url, min_size=1, max_size=10)
    worker_pool = await create_pool(url, min_size=1, max_size=10)
    app = create_app(settings, Resources(settings, pool, client))
    tracing.instrument_sql()
    try:
        async with (
            build_worker(client, worker_pool, settings.task_queue),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://grantflow.test"
            ) as api,
        ):
            yield Traced(api, pool, exporter, client)
    finally:
        tracing.uninstrument_sql()
        await pool.close()
        await worker_pool.close()
        exporter.clear()


def lineage(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names from `span` up to the root of its trace."""
    names = [span.name]
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_submission_is_one_trace_from_http_down_to_sql(traced: Traced) -> None:
    admin = await make_user(traced.pool, Role.admin)
    applicant = await make_user(traced.pool, Role.applicant)
    created = await traced.api.post("/v1/programmes", json=programme_body(), headers=admin.headers)
    assert created.status_code == 201, created.text
    traced.exporter.clear()
    with capture_logs(processors=[merge_contextvars, tracing.add_trace_ids]) as logs:
        submitted = await traced.api.post(
            "/v1/applications",
            json=application_body(created.json()["id"]),
            headers=applicant.headers,
        )
        assert submitted.status_code == 201, submitted.text
        app_id = submitted.json()["id"]

        async def screened() -> bool:
            read = await traced.api.get(f"/v1/applications/{app_id}", headers=applicant.headers)
            return bool(read.json()["stage"] == "under_review")

        await eventually(screened)
    spans = traced.exporter.get_finished_spans()
    [http] = [s for s in spans if s.name == "POST /v1/applications"]
    assert http.kind == trace.SpanKind.SERVER
    trace_id = http.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in ours}
    chains = [lineage(s, by_id) for s in ours]
    sql_in_activity = [
        chain
        for chain, span in zip(chains, ours, strict=True)
        if span.kind == trace.SpanKind.CLIENT
        and span.attributes is not None
        and span.attributes.get("db.system") == "postgresql"
        and any(name.startswith("RunActivity:") for name in chain)
    ]
    assert sql_in_activity, "\n".join(" < ".join(c) for c in chains)
    # The request's span is the caller of the workflow's run and of the Update it handled; the
    # activities the run started hang under the run, and their SQL under them.
    assert ["RunWorkflow:Application", "POST /v1/applications"] in chains
    assert ["HandleUpdate:registered", "POST /v1/applications"] in chains
    assert [
        "RunActivity:register_application",
        "RunWorkflow:Application",
        "POST /v1/applications",
    ] in [chain[1:] for chain in sql_in_activity]
    # The lines the worker logged for this application are in the same trace.
    hex_id = format(trace_id, "032x")
    registered = [line for line in logs if line["event"] == "application registered"]
    assert registered and all(line["trace_id"] == hex_id for line in registered), registered


async def test_a_request_its_caller_did_not_sample_traces_nothing_downstream(
    traced: Traced,
) -> None:
    """An unsampled trace travels no further than the request: its workflow and activities
    carry no context and make no span, so they pay nothing for tracing."""
    admin = await make_user(traced.pool, Role.admin)
    applicant = await make_user(traced.pool, Role.applicant)
    created = await traced.api.post("/v1/programmes", json=programme_body(), headers=admin.headers)
    assert created.status_code == 201, created.text
    traced.exporter.clear()
    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    submitted = await traced.api.post(
        "/v1/applications",
        json=application_body(created.json()["id"]),
        headers={**applicant.headers, "traceparent": unsampled},
    )
    assert submitted.status_code == 201, submitted.text
    app_id = submitted.json()["id"]

    async def screened() -> bool:
        read = await traced.api.get(f"/v1/applications/{app_id}", headers=applicant.headers)
        return bool(read.json()["stage"] == "under_review")

    await eventually(screened)
    temporal = [
        s.name
        for s in traced.exporter.get_finished_spans()
        if s.attributes is not None and app_id in str(s.attributes.get("temporalWorkflowID"))
    ]
    assert temporal == []
    assert await carried(traced.client, app_id) == []
    # The same submission sampled, in the same test: its spans are there.
    sampled = await traced.api.post(
        "/v1/applications",
        json=application_body(created.json()["id"]),
        headers={**applicant.headers, "traceparent": unsampled[:-2] + "01"},
    )
    assert sampled.status_code == 201, sampled.text

    async def traced_run() -> bool:
        return any(
            s.name == "RunWorkflow:Application"
            and s.attributes is not None
            and sampled.json()["id"] in str(s.attributes.get("temporalWorkflowID"))
            for s in traced.exporter.get_finished_spans()
        )

    await eventually(traced_run)
    assert await carried(traced.client, sampled.json()["id"]) != []


async def carried(client: Client, app_id: str) -> list[int]:
    """The events of the application's history whose header carries a trace's context."""
    history = await client.get_workflow_handle(ids.application(app_id)).fetch_history()
    return [
        e.event_id
        for e in history.events
        for header in (
            e.workflow_execution_started_event_attributes.header,
            e.activity_task_scheduled_event_attributes.header,
            e.workflow_execution_update_accepted_event_attributes.accepted_request.input.header,
        )
        if temporal_spans.HEADER in header.fields
    ]


def test_a_header_that_is_not_a_sampled_span_is_no_parent() -> None:
    """What a workflow's history carries is read as a parent only when it is a sampled span:
    anything else (another tool's header, a damaged one) starts no span."""
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    parent = temporal_spans._parent({temporal_spans.HEADER: temporal_spans._payload(good)})
    assert parent is not None and format(parent.trace_id, "032x") == good[3:35]
    for data in (b"", b"[]", b'{"traceparent": 1}', b'{"traceparent": "00-zz-00-01"}'):
        header = Payload(metadata={"encoding": b"json/plain"}, data=data)
        assert temporal_spans._parent({temporal_spans.HEADER: header}) is None, data
    unsampled = temporal_spans._payload(good[:-2] + "00")
    assert temporal_spans._parent({temporal_spans.HEADER: unsampled}) is None
    assert temporal_spans._parent({}) is None


async def test_a_request_continues_its_callers_trace(traced: Traced) -> None:
    """A caller that traces (a gateway, another service) sends `traceparent`: the request's span
    is its child, in its trace, named by the route."""
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traced.exporter.clear()
    answered = await traced.api.get(
        "/livez", headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"}
    )
    assert answered.status_code == 200
    [span] = [s for s in traced.exporter.get_finished_spans() if s.name == "GET /livez"]
    assert span.kind == trace.SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == caller_trace
    assert span.parent is not None and format(span.parent.span_id, "016x") == caller_span
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200
