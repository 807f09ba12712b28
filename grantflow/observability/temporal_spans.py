"""Temporal's part of a trace: the request's context carried into workflows and activities,
with one span where work happens and none for the plumbing in between.

The SDK's `TracingInterceptor` (`temporalio.contrib.opentelemetry`) makes a span for every
client call, every Update validator, every activity a workflow schedules, and serialises
the context through a composite propagator (trace context and baggage) each time; in the
workflow sandbox that cost 3 ms of CPU per reviewer submission, most of the tracing's
overhead (docs/benchmarks.md). This interceptor keeps what an operator reads in a trace:

- the client adds the current span's `traceparent` to the call's headers, and makes no
  span of its own (the HTTP request's span is the caller);
- the workflow makes one span when it runs (`RunWorkflow:<type>`) and one per Update or
  signal it handles (`HandleUpdate:<name>`, `HandleSignal:<name>`), never on replay, each
  of no duration at the workflow's time (a span held open across workflow tasks would not
  survive a replay);
- the activities and child workflows a handler starts carry that handler's span in their
  headers, the workflow's own span otherwise;
- an activity runs in its span (`RunActivity:<type>`), current while it runs: its SQL
  statements and log lines belong to it.

Only sampled traces travel: an unsampled request adds no header, so nothing downstream does
any tracing work. The header is the SDK's (`_tracer-data`, a JSON object with
`traceparent`), so histories recorded with either interceptor carry context both read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from temporalio import activity, client, workflow
from temporalio.api.common.v1 import Payload
from temporalio.worker import (
    ActivityInboundInterceptor,
    ContinueAsNewInput,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    SignalChildWorkflowInput,
    SignalExternalWorkflowInput,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

HEADER = "_tracer-data"  # the SDK's key: either interceptor reads the other's histories
_SPAN = "__grantflow_workflow_span"  # the extern function that makes a workflow's span
_JSON = {"encoding": b"json/plain"}

# The span (as a header payload) that a workflow's outgoing calls carry: the Update or
# signal handler's, in that handler's task and the tasks it starts.
_current: ContextVar[Payload | None] = ContextVar("grantflow_workflow_span", default=None)


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _payload(traceparent: str) -> Payload:
    return Payload(metadata=_JSON, data=json.dumps({"traceparent": traceparent}).encode())


def _parent(headers: Mapping[str, Payload]) -> SpanContext | None:
    """The sampled span a header carries, or None (no header, unreadable, not sampled)."""
    payload = headers.get(HEADER)
    if payload is None:
        return None
    try:
        _, trace_id, span_id, flags = json.loads(payload.data)["traceparent"].split("-")
        context = SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(flags, 16)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return context if context.is_valid and context.trace_flags.sampled else None


def _with(headers: Mapping[str, Payload], span: Payload | None) -> Mapping[str, Payload]:
    return {**headers, HEADER: span} if span is not None else headers


@dataclass(frozen=True)
class _SpanRequest:
    parent: str  # the header's payload data, as it came
    name: str
    workflow_id: str
    run_id: str
    time_ns: int


class TemporalSpans(client.Interceptor, Interceptor):
    """Client and worker interceptor: see the module's docstring. Set on the client, it
    serves the workers made from that client too."""

    def __init__(self) -> None:
        # A proxy until the process sets its provider, then that provider's tracer.
        self.tracer = trace.get_tracer(__name__)

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _ClientOutbound(next)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next, self.tracer)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_SPAN] = self._workflow_span
        return _WorkflowInbound

    def _workflow_span(self, request: _SpanRequest) -> Payload | None:
        """A workflow's span, started and ended at the workflow's time, made outside the
        sandbox; its context as a header payload, for the calls the workflow makes next."""
        parent = _parent({HEADER: Payload(metadata=_JSON, data=request.parent.encode())})
        if parent is None:
            return None
        span = self.tracer.start_span(
            request.name,
            trace.set_span_in_context(NonRecordingSpan(parent)),
            kind=SpanKind.SERVER,
            attributes={"temporalWorkflowID": request.workflow_id, "temporalRunID": request.run_id},
            start_time=request.time_ns,
        )
        span.end(end_time=request.time_ns)
        return _payload(_traceparent(span.get_span_context()))


class _ClientOutbound(client.OutboundInterceptor):
    """Adds the current span, when sampled, to what the client sends a workflow."""

    @staticmethod
    def _span() -> Payload | None:
        context = trace.get_current_span().get_span_context()
        if not (context.is_valid and context.trace_flags.sampled):
            return None
        return _payload(_traceparent(context))

    async def start_workflow(self, input: client.StartWorkflowInput) -> Any:
        input.headers = _with(input.headers, self._span())
        return await super().start_workflow(input)

    async def start_workflow_update(
        self, input: client.StartWorkflowUpdateInput
    ) -> client.WorkflowUpdateHandle[Any]:
        input.headers = _with(input.headers, self._span())
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: client.StartWorkflowUpdateWithStartInput
    ) -> client.WorkflowUpdateHandle[Any]:
        span = self._span()
        input.start_workflow_input.headers = _with(input.start_workflow_input.headers, span)
        input.update_workflow_input.headers = _with(input.update_workflow_input.headers, span)
        return await super().start_update_with_start_workflow(input)

    async def signal_workflow(self, input: client.SignalWorkflowInput) -> None:
        input.headers = _with(input.headers, self._span())
        await super().signal_workflow(input)


class _ActivityInbound(ActivityInboundInterceptor):
    """Runs a traced activity in its span, current while it runs (its SQL, its logs)."""

    def __init__(self, next: ActivityInboundInterceptor, tracer: trace.Tracer) -> None:
        super().__init__(next)
        self.tracer = tracer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        parent = _parent(input.headers)
        if parent is None:
            return await super().execute_activity(input)
        info = activity.info()
        with self.tracer.start_as_current_span(
            f"RunActivity:{info.activity_type}",
            trace.set_span_in_context(NonRecordingSpan(parent)),
            kind=SpanKind.SERVER,
            attributes={
                "temporalActivityID": info.activity_id,
                "temporalWorkflowID": info.workflow_id or "",
            },
        ):
            return await super().execute_activity(input)


class _WorkflowInbound(WorkflowInboundInterceptor):
    """Runs in the workflow's sandbox: a span for the run and for each Update and signal
    handled, made by the extern function (outside the sandbox), never on replay."""

    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        # The run's span, or on replay (which makes none) the caller's that started it.
        self.run_span: Payload | None = None
        self.caller: Payload | None = None

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound, self))

    def _span(self, name: str, headers: Mapping[str, Payload]) -> Payload | None:
        parent = headers.get(HEADER)
        if parent is None or workflow.unsafe.is_replaying():
            return None
        info = workflow.info()
        make = workflow.extern_functions()[_SPAN]
        return make(  # type: ignore[no-any-return]
            _SpanRequest(
                parent=parent.data.decode(),
                name=name,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                time_ns=workflow.time_ns(),
            )
        )

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        self.caller = input.headers.get(HEADER)
        span = self._span(f"RunWorkflow:{workflow.info().workflow_type}", input.headers)
        self.run_span = span or self.caller
        return await super().execute_workflow(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        span = self._span(f"HandleUpdate:{input.update}", input.headers)
        if span is not None:
            _current.set(span)  # this handler's task only (each handler runs in its own)
        return await super().handle_update_handler(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        span = self._span(f"HandleSignal:{input.signal}", input.headers)
        if span is not None:
            _current.set(span)
        await super().handle_signal(input)

    def outgoing(self) -> Payload | None:
        return _current.get() or self.run_span


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    """Adds the handler's (or the run's) span to the activities, child workflows and signals
    the workflow starts, and its run's span to its continuation."""

    def __init__(self, next: WorkflowOutboundInterceptor, inbound: _WorkflowInbound) -> None:
        super().__init__(next)
        self.inbound = inbound

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with(input.headers, self.inbound.outgoing())
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with(input.headers, self.inbound.outgoing())
        return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        input.headers = _with(input.headers, self.inbound.outgoing())
        return await super().start_child_workflow(input)

    async def signal_child_workflow(self, input: SignalChildWorkflowInput) -> None:
        input.headers = _with(input.headers, self.inbound.outgoing())
        await super().signal_child_workflow(input)

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        input.headers = _with(input.headers, self.inbound.outgoing())
        await super().signal_external_workflow(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        input.headers = _with(input.headers, self.inbound.caller)  # the next run: a sibling
        super().continue_as_new(input)
