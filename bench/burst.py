"""An intake burst: the last day before a deadline, every applicant submits at once.

    .venv/bin/python -m bench.burst --n 5000 --in-flight 64

grantflow in its production shape: the API (`grantflow api`) and the worker (`grantflow
worker`) each in a process of its own, the driver in this one. N applications go in through
`POST /v1/applications` from N/10 applicants (each its own institution), each with its own
Idempotency-Key, at most `--in-flight` at a time; then 10 % of them are sent again with the
same key (a browser's retry), which must return the same application and create nothing.

The baseline, on the same Temporal server in the same run, with the same driver and
concurrency: bare Temporal update-with-start of the same shape. Its workflow does, before it
answers, what grantflow's application workflow did before it answered the first submission
(its local activities, activities and search attribute upserts, read from that history), then
starts as many children as grantflow's had started by the end of its burst, each running as
many activities as grantflow's first one had; the 10 % are resent with the same workflow id
and update id.

Prints accepted per second for both and their ratio, submit latency p50 / p99 for both, and
the applications lost (answered but not on record) and duplicated (on record twice) — both
must be 0. Exit 1 when either is not."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHistory
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.drive import PARAMS
from bench.harness import IDLE_EXPIRY, Servers, grantflow_processes, percentile, servers
from schemas.common import Role
from tests.support import application_body, make_user, programme_body
from workflows import ids
from workflows.application_book import STAGE

RESENT_SHARE = 0.10
TIMEOUT = timedelta(seconds=30)


@dataclass
class Burst:
    """One side's figures."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    answered: set[str] = field(default_factory=set)
    resent_mismatched: int = 0

    def accepted_per_s(self) -> float:
        return len(self.answered) / self.seconds if self.seconds else 0.0


async def drive(
    n: int, in_flight: int, submit: Callable[[int], Awaitable[str]], burst: Burst
) -> None:
    """Submissions 0..n-1, at most `in_flight` at a time, each timed; then 10 % sent again."""
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int, timed: bool) -> str:
        async with gate:
            began = time.perf_counter()
            answer = await submit(i)
            if timed:
                burst.latencies.append(time.perf_counter() - began)
            return answer

    began = time.perf_counter()
    first = await asyncio.gather(*(one(i, True) for i in range(n)))
    burst.seconds = time.perf_counter() - began
    burst.answered = set(first)
    resent = range(0, n, round(1 / RESENT_SHARE))
    again = await asyncio.gather(*(one(i, False) for i in resent))
    burst.resent_mismatched = sum(a != first[i] for a, i in zip(again, resent, strict=True))


# --- grantflow ----------------------------------------------------------------------------


async def grantflow_burst(
    srv: Servers, n: int, in_flight: int, warmup: int
) -> tuple[Burst, str, dict[str, int]]:
    """grantflow's burst; returns its figures, one application's workflow id and the counts
    on record (the burst's rows, and how many of the answered ids have one)."""
    limits = httpx.Limits(
        max_connections=in_flight, max_keepalive_connections=in_flight, keepalive_expiry=IDLE_EXPIRY
    )
    queue = f"burst-{uuid.uuid4().hex[:8]}"
    async with grantflow_processes(srv, limits=limits, task_queue=queue) as gf:
        http, pool = gf.api, gf.pool
        admin = await make_user(pool, Role.admin)
        body = programme_body(
            params=PARAMS, specialties=["radiology"], budget_rub=40_000_000 * (n + warmup)
        )
        made = await http.post("/v1/programmes", json=body, headers=admin.headers)
        made.raise_for_status()
        programme_id = made.json()["id"]
        applicants = [
            await make_user(pool, Role.applicant) for _ in range(max(1, (n + warmup) // 10))
        ]
        run = uuid.uuid4().hex[:8]

        def submitter(label: str) -> Callable[[int], Awaitable[str]]:
            async def submit(i: int) -> str:
                who = applicants[i % len(applicants)]
                headers = who.headers | {"Idempotency-Key": f"{run}-{label}-{i}"}
                body = application_body(programme_id, title=f"Burst {label} {i}")
                for _ in range(10):
                    r = await http.post("/v1/applications", json=body, headers=headers)
                    if r.status_code in (429, 503):  # busy: retry as a browser would
                        await asyncio.sleep(float(r.headers.get("Retry-After", 0.5)))
                        continue
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"submit {i}: {r.status_code} {r.text}")
                    return str(r.json()["id"])
                raise RuntimeError(f"submit {i}: still busy after 10 tries")

            return submit

        await drive(warmup, in_flight, submitter("warmup"), Burst())
        burst = Burst()
        await drive(n, in_flight, submitter("burst"), burst)
        first = next(iter(burst.answered))
        counts = {
            "rows": await pool.fetchval(
                "SELECT count(*) FROM applications"
                " WHERE programme_id = $1 AND content->>'title' LIKE 'Burst burst %'",
                uuid.UUID(programme_id),
            ),
            "answered_on_record": await pool.fetchval(
                "SELECT count(*) FROM applications WHERE id = ANY($1::uuid[])",
                [uuid.UUID(a) for a in burst.answered],
            ),
        }
        return burst, ids.application(first), counts


# --- bare Temporal of the same shape ------------------------------------------------------------


@dataclass
class Shape:
    """What grantflow's application workflow did before it answered, and after."""

    local_before: int = 0
    activities_before: int = 0
    upserts_before: int = 0
    children: int = 0
    child_activities: int = 0


def shape_before_answer(history: WorkflowHistory) -> Shape:
    shape = Shape()
    for e in history.events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            break
        if t == EventType.EVENT_TYPE_MARKER_RECORDED:
            shape.local_before += e.marker_recorded_event_attributes.marker_name == (
                "core_local_activity"
            )
        shape.activities_before += t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        shape.upserts_before += t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    shape.children = sum(
        e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        for e in history.events
    )
    return shape


async def read_shape(client: Client, workflow_id: str) -> Shape:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    shape = shape_before_answer(history)
    for e in history.events:
        if e.HasField("start_child_workflow_execution_initiated_event_attributes"):
            child = e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            child_history = await client.get_workflow_handle(child).fetch_history()
            shape.child_activities = sum(
                ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                or (
                    ev.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                    and ev.marker_recorded_event_attributes.marker_name == "core_local_activity"
                )
                for ev in child_history.events
            )
            break
    return shape


@activity.defn
async def empty() -> None:
    """An empty activity. Idempotent: it does nothing."""


@workflow.defn(sandboxed=False)
class BareChild:
    """A child that runs its activities, then waits (grantflow's review waits for experts)."""

    @workflow.run
    async def run(self, activities: int) -> None:
        for _ in range(activities):
            await workflow.execute_activity(empty, start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: False)


@workflow.defn(sandboxed=False)
class BareIntake:
    """Registers (its local activities, activities, upserts), answers the submission, then
    starts its children and waits as grantflow's application does."""

    def __init__(self) -> None:
        self._registered = False

    @workflow.run
    async def run(self, shape: dict[str, int]) -> None:
        for _ in range(shape["local_before"]):
            await workflow.execute_local_activity(empty, start_to_close_timeout=TIMEOUT)
        for _ in range(shape["activities_before"]):
            await workflow.execute_activity(empty, start_to_close_timeout=TIMEOUT)
        for _ in range(shape["upserts_before"]):
            workflow.upsert_search_attributes([STAGE.value_set("screening")])
        self._registered = True
        for c in range(shape["children"]):
            await workflow.start_child_workflow(
                BareChild.run, shape["child_activities"], id=f"{workflow.info().workflow_id}-{c}"
            )
        await workflow.wait_condition(lambda: False)

    @workflow.update
    async def registered(self) -> str:
        """Returns once the submission is on record."""
        await workflow.wait_condition(lambda: self._registered)
        return workflow.info().workflow_id


async def bare_burst(client: Client, shape: Shape, n: int, in_flight: int, warmup: int) -> Burst:
    task_queue = f"bare-burst-{uuid.uuid4().hex[:8]}"
    spec = shape.__dict__

    def submitter(label: str) -> Callable[[int], Awaitable[str]]:
        async def submit(i: int) -> str:
            start = WithStartWorkflowOperation(
                BareIntake.run,
                spec,
                id=f"{task_queue}-{label}-{i}",
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            return await client.execute_update_with_start_workflow(
                BareIntake.registered, id="registered", start_workflow_operation=start
            )

        return submit

    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareIntake, BareChild],
        activities=[empty],
        max_concurrent_workflow_tasks=in_flight,
    ):
        await drive(warmup, in_flight, submitter("warmup"), Burst())
        burst = Burst()
        await drive(n, in_flight, submitter("burst"), burst)
    return burst


# --- the report ---------------------------------------------------------------------------------


def report(label: str, burst: Burst) -> None:
    ms = sorted(x * 1000 for x in burst.latencies)
    print(
        f"  {label:<10} {len(burst.answered):>6} accepted in {burst.seconds:6.1f} s"
        f" = {burst.accepted_per_s():6.1f}/s   submit p50 {percentile(ms, 50):7.1f} ms"
        f"   p99 {percentile(ms, 99):7.1f} ms"
    )


async def main(n: int, in_flight: int, warmup: int) -> int:
    async with servers() as srv:
        print(f"intake burst: {n} applications, {in_flight} in flight, then 10 % resent")
        ours, workflow_id, counts = await grantflow_burst(srv, n, in_flight, warmup)
        shape = await read_shape(srv.client, workflow_id)
        print(f"  shape before the answer, read from {workflow_id}: {shape}")
        bare = await bare_burst(srv.client, shape, n, in_flight, warmup)
    report("bare", bare)
    report("grantflow", ours)
    ratio = ours.accepted_per_s() / bare.accepted_per_s()
    p99 = percentile(ours.latencies, 99) / percentile(bare.latencies, 99)
    lost = len(ours.answered) - counts["answered_on_record"]
    duplicated = counts["rows"] - len(ours.answered) + ours.resent_mismatched
    print(f"  throughput ratio grantflow / bare: {ratio:.2f}   p99 ratio: {p99:.2f}")
    print(
        f"  on record {counts['rows']}, answered {len(ours.answered)},"
        f" lost {lost}, duplicated {duplicated}"
        f" (resent answered another id: {ours.resent_mismatched};"
        f" bare: {bare.resent_mismatched})"
    )
    return 0 if lost == 0 and duplicated == 0 and len(ours.answered) == n else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="applications (default 5000)")
    parser.add_argument("--in-flight", type=int, default=64, help="submissions at a time")
    parser.add_argument("--warmup", type=int, default=50, help="untimed submissions first")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.n, args.in_flight, args.warmup)))


if __name__ == "__main__":
    cli()
