"""Bare Temporal of grantflow's shape: what each grantflow workflow did (activities, timers,
children, Updates and Signals received, Signals sent) is read from its history, and a `Bare`
workflow with empty bodies does the same, on the same server, with no HTTP and no PostgreSQL.

How a `Bare` workflow spends its commands: it starts its children in grantflow's order, waiting
for each that had ended in grantflow before the next one started (stages that follow each
other), runs one activity in each Update's handler (grantflow's Updates run one write each)
and the others one after the other, sleeps the timers that fired in grantflow all at once
with grantflow's durations, starts and later cancels as many timers as grantflow cancelled
(deadlines met), signals the workflows grantflow signalled, and ends once it has received as
many Updates and Signals as the grantflow workflow did. The driver sends the Updates (the first
one with the start, as the API does) as soon as their workflow exists."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker


class Shape(BaseModel):
    """What one workflow of the grantflow run did, read from its history."""

    workflow_id: str
    workflow_type: str
    parent_id: str | None = None
    activities: int = 0
    local_activities: int = 0
    timers_fired: list[float] = Field(default_factory=list)
    timers_cancelled: int = 0
    children: list[str] = Field(default_factory=list)
    # Per child: whether it had ended before the next one started (stages that follow each
    # other) or ran alongside it (the pilot beside the agreement).
    children_awaited: list[bool] = Field(default_factory=list)
    updates: int = 0
    signals_received: int = 0
    signals_sent: list[str] = Field(default_factory=list)
    search_attribute_upserts: int = 0
    continued_as_new: int = 0
    events: int = 0


class BareSpec(BaseModel):
    """The `Bare` workflow's input: a shape with its ids moved into the bare run's space."""

    shape: Shape
    children: list[BareSpec] = Field(default_factory=list)
    prefix: str


def shape_of(history: WorkflowHistory) -> Shape:
    started = history.events[0].workflow_execution_started_event_attributes
    parent = started.parent_workflow_execution.workflow_id or None
    shape = Shape(
        workflow_id=history.workflow_id,
        workflow_type=started.workflow_type.name,
        parent_id=parent,
        events=len(history.events),
    )
    timers: dict[str, float] = {}
    fired: set[str] = set()
    ended: set[str] = set()
    for e in history.events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            shape.activities += 1
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            # Patch markers are bookkeeping; local activities are work.
            name = e.marker_recorded_event_attributes.marker_name
            shape.local_activities += name == "core_local_activity"
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            a = e.timer_started_event_attributes
            timers[a.timer_id] = a.start_to_fire_timeout.ToTimedelta().total_seconds()
        elif t == EventType.EVENT_TYPE_TIMER_FIRED:
            fired.add(e.timer_fired_event_attributes.timer_id)
        elif t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            shape.children_awaited += [c in ended for c in shape.children[-1:]]
            shape.children.append(
                e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            )
        elif e.HasField("child_workflow_execution_completed_event_attributes"):
            a3 = e.child_workflow_execution_completed_event_attributes
            ended.add(a3.workflow_execution.workflow_id)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            shape.updates += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            shape.signals_received += 1
        elif t == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            a2 = e.signal_external_workflow_execution_initiated_event_attributes
            shape.signals_sent.append(a2.workflow_execution.workflow_id)
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            shape.search_attribute_upserts += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            shape.continued_as_new += 1
    shape.children_awaited += [True for _ in shape.children[len(shape.children_awaited) :]]
    shape.timers_fired = [d for tid, d in timers.items() if tid in fired]
    shape.timers_cancelled = len(timers) - len(fired)
    return shape


def merge(runs: list[Shape]) -> Shape:
    """One shape for a workflow id across its runs (continue-as-new)."""
    first = runs[0].model_copy(deep=True)
    for r in runs[1:]:
        first.activities += r.activities
        first.local_activities += r.local_activities
        first.timers_fired += r.timers_fired
        first.timers_cancelled += r.timers_cancelled
        first.children += r.children
        first.children_awaited += r.children_awaited
        first.updates += r.updates
        first.signals_received += r.signals_received
        first.signals_sent += r.signals_sent
        first.search_attribute_upserts += r.search_attribute_upserts
        first.continued_as_new += r.continued_as_new
        first.events += r.events
    return first


async def shapes(client: Client, task_queue: str) -> dict[str, Shape]:
    """Every workflow of the run, by id, in the order of their starts."""
    runs: dict[str, list[Shape]] = {}
    executions = [e async for e in client.list_workflows(f"TaskQueue = '{task_queue}'")]
    executions.sort(key=lambda e: e.start_time)
    for execution in executions:
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        runs.setdefault(execution.id, []).append(shape_of(await handle.fetch_history()))
    return {wid: merge(rs) for wid, rs in runs.items()}


def totals(all_shapes: dict[str, Shape]) -> Counter[str]:
    """The figures the baseline must match, summed over the run."""
    c: Counter[str] = Counter()
    for s in all_shapes.values():
        c["workflows"] += 1
        c["child workflows"] += s.parent_id is not None
        c["activities"] += s.activities
        c["local activities"] += s.local_activities
        c["timers fired"] += len(s.timers_fired)
        c["timers cancelled"] += s.timers_cancelled
        c["updates"] += s.updates
        c["signals"] += s.signals_received
        c["search attribute upserts"] += s.search_attribute_upserts
        c["continue-as-new"] += s.continued_as_new
        c["history events"] += s.events
    return c


# --- the bare workflow ------------------------------------------------------------------------


TIMEOUT = timedelta(seconds=30)


@activity.defn
async def empty() -> None:
    """An empty activity. Idempotent: it does nothing."""


@workflow.defn(sandboxed=False)
class Bare:
    """Issues the commands of one grantflow workflow, with empty bodies. As in grantflow,
    where most Updates run one write before they answer, each Update runs one of the
    workflow's activities (a local one first, while there are); the body runs the rest."""

    @workflow.init
    def __init__(self, spec: BareSpec) -> None:
        s = spec.shape
        self._updates = 0
        self._signals = 0
        self._local_in_updates = min(s.updates, s.local_activities)
        self._in_updates = min(s.updates - self._local_in_updates, s.activities)

    @workflow.run
    async def run(self, spec: BareSpec) -> None:
        s = spec.shape
        pending = [
            asyncio.create_task(workflow.sleep(timedelta(days=1)))
            for _ in range(s.timers_cancelled)
        ]
        alongside = []
        for child, awaited in zip(spec.children, s.children_awaited, strict=True):
            handle = await workflow.start_child_workflow(
                Bare.run, child, id=spec.prefix + child.shape.workflow_id
            )
            if awaited:
                await handle
            else:
                alongside.append(handle)
        for _ in range(s.activities - self._in_updates):
            await workflow.execute_activity(empty, start_to_close_timeout=TIMEOUT)
        for _ in range(s.local_activities - self._local_in_updates):
            await workflow.execute_local_activity(empty, start_to_close_timeout=TIMEOUT)
        await asyncio.gather(*(workflow.sleep(d) for d in s.timers_fired))
        for target in s.signals_sent:
            await workflow.get_external_workflow_handle(spec.prefix + target).signal(Bare.nudge)
        await workflow.wait_condition(
            lambda: self._updates >= s.updates and self._signals >= s.signals_received
        )
        for timer in pending:
            timer.cancel()
        for handle in alongside:
            await handle
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def poke(self) -> None:
        """An Update that runs one empty activity while the workflow has some to spare."""
        n = self._updates
        self._updates += 1
        if n < self._local_in_updates:
            await workflow.execute_local_activity(empty, start_to_close_timeout=TIMEOUT)
        elif n < self._local_in_updates + self._in_updates:
            await workflow.execute_activity(empty, start_to_close_timeout=TIMEOUT)

    @workflow.signal
    def nudge(self) -> None:
        """An empty Signal."""
        self._signals += 1


def bare_worker(client: Client, task_queue: str) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[Bare], activities=[empty])


def specs(all_shapes: dict[str, Shape], prefix: str) -> list[BareSpec]:
    """The top-level workflows, each with its tree of children."""

    def spec(s: Shape) -> BareSpec:
        kids = [spec(all_shapes[c]) for c in s.children if c in all_shapes]
        return BareSpec(shape=s, children=kids, prefix=prefix)

    return [spec(s) for s in all_shapes.values() if s.parent_id is None]


async def run_baseline(client: Client, all_shapes: dict[str, Shape], task_queue: str) -> float:
    """Run the bare copy of the grantflow run; returns its wall time in seconds.

    The top-level workflows start with their first Update, those that signal others last (so
    that a workflow is there before another signals it); then every other Update goes out."""
    prefix = f"bare-{task_queue[-8:]}-"
    tops = specs(all_shapes, prefix)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with bare_worker(client, task_queue):
        quiet = [t for t in tops if not t.shape.signals_sent]
        loud = [t for t in tops if t.shape.signals_sent]
        handles = list(await asyncio.gather(*(_start(client, t, task_queue) for t in quiet)))
        handles += await asyncio.gather(*(_start(client, t, task_queue) for t in loud))
        tops = quiet + loud
        sends = [
            _send(client, t.prefix + t.shape.workflow_id, max(0, t.shape.updates - 1)) for t in tops
        ]
        sends += [
            _send(client, d.prefix + d.shape.workflow_id, d.shape.updates)
            for t in tops
            for d in _descendants(t)
        ]
        await asyncio.gather(*sends)
        await asyncio.gather(*(h.result() for h in handles))
    return loop.time() - began


async def _start(client: Client, spec: BareSpec, task_queue: str) -> WorkflowHandle[Any, Any]:
    wid = spec.prefix + spec.shape.workflow_id
    if not spec.shape.updates:
        return await client.start_workflow(Bare.run, spec, id=wid, task_queue=task_queue)
    start = WithStartWorkflowOperation(
        Bare.run,
        spec,
        id=wid,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    await client.execute_update_with_start_workflow(Bare.poke, start_workflow_operation=start)
    return await start.workflow_handle()


def _descendants(spec: BareSpec) -> list[BareSpec]:
    found: list[BareSpec] = []
    for c in spec.children:
        found += [c, *_descendants(c)]
    return found


async def _send(client: Client, workflow_id: str, count: int) -> None:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(count):
        while True:
            try:
                await handle.execute_update(Bare.poke)
                break
            except RPCError as exc:  # the parent has not started this child yet
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.02)
