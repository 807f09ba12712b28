"""A reviewer's submit through HTTP against a bare Update round trip, p50 and p99.

    .venv/bin/python -m bench.latency --calls 500

grantflow: `POST /v1/reviews/{task}/review` (bearer auth, the task's owner and the rubric
checked, the review workflow's Update with its validator and its write, the task read back),
one call at a time, each on its own application. Baselines on the same server, one call at a
time, each on its own workflow: an Update with an empty handler, and an Update whose handler
runs one empty local activity (grantflow's handler runs one write, as a local activity).
Target: grantflow's p99 within 15 ms of the bare Update's.

    .venv/bin/python -m bench.latency --observability --calls 300

The same submit with metrics and tracing off, then on (the API's request metrics, the
worker's SDK metrics served, a span per request, Temporal call, workflow and activity, and per
SQL statement with `--sql-spans`, batched to an exporter that drops them), on two stacks of
the same servers in the same run, alternating call by call so that a change in the machine's
load weighs on both; `--rounds N` repeats it on the same stacks and prints each round's
differences and their medians. Target: the p99 with them on within 2 ms of the p99 with them
off."""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from bench.drive import PARAMS
from bench.harness import (
    STEP,
    Grantflow,
    create_programme,
    eventually,
    grantflow,
    make_user,
    ok,
    percentile,
    servers,
)
from grantflow.dev.embedded import free_port
from grantflow.observability import tracing
from grantflow.observability.worker import sdk_runtime
from grantflow.settings import Settings
from grantflow.temporal import connect
from schemas.common import Role
from tests.support import application_body

REVIEW = {
    "scores": {"clinical_value": 8, "novelty": 7, "feasibility": 7},
    "recommendation": "fund",
    "comments": "Sound plan.",
}


@activity.defn
async def noop() -> None:
    """An empty activity. Idempotent: it does nothing."""


@workflow.defn(sandboxed=False)
class Waiter:
    """Waits for one Update, empty or running one empty local activity, then ends."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def empty(self) -> None:
        """An empty Update."""
        self._done = True

    @workflow.update
    async def with_activity(self) -> None:
        """An Update that runs one empty local activity, as grantflow's handler runs its
        write."""
        await workflow.execute_local_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        self._done = True


async def timed(calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    """Each call's latency in milliseconds, one call at a time."""
    loop = asyncio.get_running_loop()
    samples = []
    for call in calls:
        began = loop.time()
        await call()
        samples.append((loop.time() - began) * 1000)
    return samples


async def review_tasks(gf: Grantflow, count: int, concurrency: int) -> list[tuple[str, Any]]:
    """`count` accepted review tasks, each of its own application: (task id, reviewer)."""
    admin = await make_user(gf.pool, Role.admin)
    specialty = f"radiology-{uuid.uuid4().hex[:6]}"
    programme = await create_programme(
        gf, admin, specialty, {**PARAMS, "reviews_required": 2}, name="Latency bench"
    )
    reviewers = {
        r.id: r
        for r in [await make_user(gf.pool, Role.reviewer, specialty=specialty) for _ in range(8)]
    }
    applicants = [await make_user(gf.pool, Role.applicant) for _ in range(max(1, count // 50))]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[str, Any]:
        async with gate:
            applicant = applicants[i % len(applicants)]
            app = ok(
                await gf.api.post(
                    "/v1/applications",
                    json=application_body(programme["id"], specialty=specialty),
                    headers={**applicant.headers, "Idempotency-Key": f"latency-{i}"},
                )
            )

            async def offered() -> Any:
                body = ok(
                    await gf.api.get(
                        f"/v1/admin/applications/{app['id']}/reviews", headers=admin.headers
                    )
                )
                # Two reviews required: the first one does not end the review stage, so no
                # other write runs in the background of the measured call.
                return body["tasks"][0] if len(body["tasks"]) == 2 else None

            task = await eventually(offered)
            reviewer = reviewers[task["reviewer_id"]]
            accepted = await gf.api.post(
                f"/v1/reviews/{task['task_id']}/acceptance", headers=reviewer.headers
            )
            ok(accepted)
            return task["task_id"], reviewer

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def bare_updates(client: Client, count: int, update: str) -> list[float]:
    queue = f"latency-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[Waiter], activities=[noop]):
        handles = [
            await client.start_workflow(Waiter.run, id=f"{queue}-{i}", task_queue=queue)
            for i in range(count)
        ]
        samples = await timed([functools.partial(h.execute_update, update) for h in handles])
        await asyncio.gather(*(h.result() for h in handles))
    return samples


async def submit(gf: Grantflow, task_id: str, reviewer: Any) -> None:
    ok(await gf.api.post(f"/v1/reviews/{task_id}/review", json=REVIEW, headers=reviewer.headers))


def report(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(f"  {name:38} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({len(samples)} calls)")
    return p50, p99


async def main(calls: int, concurrency: int, verbose: bool) -> None:
    async with servers() as srv, grantflow(srv) as gf:
        tasks = await review_tasks(gf, calls, concurrency)
        gf.round_trips.reset()
        STEP.set("latency")
        http = await timed([functools.partial(submit, gf, t, r) for t, r in tasks])
        trips = dict(gf.round_trips.by_source)
        if verbose:
            gf.round_trips.print_queries(calls)
        empty = await bare_updates(srv.client, calls, "empty")
        one_write = await bare_updates(srv.client, calls, "with_activity")
    print(f"\nLatency, one call at a time ({calls} calls each):")
    _, gf99 = report("grantflow: POST /v1/reviews/{task}/review", http)
    _, bare99 = report("bare Update, empty handler", empty)
    report("bare Update, one empty local activity", one_write)
    print(f"  p99 difference: {gf99 - bare99:+.2f} ms (target: within 15 ms)")
    print("  PostgreSQL round trips per submit:")
    for source, count in sorted(trips.items()):
        print(f"    {source:34} {count / calls:5.1f}")


class Dropped(SpanExporter):
    """Takes every batch and keeps nothing: the spans' cost without a collector's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def observed_client(srv: Any, settings: Settings) -> Client:
    """A client as a traced worker process has it: the SDK's metrics served, the tracing
    interceptor on."""
    assert settings.temporal_address
    return await connect(
        settings.temporal_address,
        runtime=sdk_runtime(settings),
        interceptors=tracing.client_interceptors(settings),
    )


async def observability(
    calls: int, concurrency: int, *, sql_spans: bool = False, rounds: int = 1, block: int = 1
) -> None:
    """p50 and p99 of the submit with metrics and tracing off and on, alternating by `block`
    calls, `rounds` times (SQL spans, when asked for, are switched on and off between the
    legs, outside the timed calls)."""
    async with servers() as srv:
        on = Settings(
            metrics=True,
            worker_metrics_port=free_port(),
            temporal_address=srv.client.service_client.config.target_host,
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
            trace_sql=sql_spans,
        )
        tracing.start(on, "bench", exporter=Dropped())  # as a process with tracing on starts
        tracing.uninstrument_sql()  # until the traced stack's turn
        client = await observed_client(srv, on)
        differences: list[tuple[float, float]] = []
        async with (
            grantflow(srv, settings=Settings(metrics=False)) as off_gf,
            grantflow(srv, settings=on, client=client) as on_gf,
        ):
            for round_ in range(1, rounds + 1):
                off_tasks = await review_tasks(off_gf, calls, concurrency)
                on_tasks = await review_tasks(on_gf, calls, concurrency)
                samples = await alternate(
                    {"off": (off_gf, off_tasks), "on": (on_gf, on_tasks)}, block, sql_spans
                )
                sql = "on" if sql_spans else "off"
                print(f"\nRound {round_}, metrics and tracing off and on ({calls} calls each,")
                print(f"blocks of {block}, SQL spans {sql}):")
                off50, off99 = report("off: POST /v1/reviews/{task}/review", samples["off"])
                on50, on99 = report("on:  POST /v1/reviews/{task}/review", samples["on"])
                print(f"  p50 difference: {on50 - off50:+.2f} ms")
                print(f"  p99 difference: {on99 - off99:+.2f} ms (target: within 2 ms)")
                differences.append((on50 - off50, on99 - off99))
    if rounds > 1:
        p50 = statistics.median(d[0] for d in differences)
        p99 = statistics.median(d[1] for d in differences)
        print(f"\nMedians over {rounds} rounds: p50 difference {p50:+.2f} ms,")
        print(f"p99 difference {p99:+.2f} ms (target: within 2 ms)")


async def alternate(
    legs: dict[str, tuple[Grantflow, list[tuple[str, Any]]]], block: int, sql_spans: bool
) -> dict[str, list[float]]:
    """Each leg's latencies, the legs taking turns by `block` calls."""
    samples: dict[str, list[float]] = {leg: [] for leg in legs}
    calls = min(len(tasks) for _, tasks in legs.values())
    for n, start in enumerate(range(0, calls, block)):
        # Each leg goes first every other block: the second of two calls in a row was 2.7 ms
        # slower at p50 with both legs off (an A/A run), a bias that would otherwise land on
        # one leg only.
        for leg in ("off", "on") if n % 2 == 0 else ("on", "off"):
            gf, tasks = legs[leg]
            if sql_spans and leg == "on":
                tracing.instrument_sql()
            elif sql_spans:
                tracing.uninstrument_sql()
            chunk = tasks[start : start + block]
            samples[leg] += await timed([functools.partial(submit, gf, *t) for t in chunk])
    return samples


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls of each kind (default 500)")
    parser.add_argument(
        "--concurrency", type=int, default=20, help="applications prepared at a time (default 20)"
    )
    parser.add_argument("--queries", action="store_true", help="print every statement per call")
    parser.add_argument(
        "--observability",
        action="store_true",
        help="the submit with metrics and tracing off against on, instead of the baselines",
    )
    parser.add_argument(
        "--sql-spans", action="store_true", help="with --observability: a span per SQL statement"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --observability: rounds on the same stacks"
    )
    args = parser.parse_args()
    if args.observability:
        asyncio.run(
            observability(
                args.calls, args.concurrency, sql_spans=args.sql_spans, rounds=args.rounds
            )
        )
    else:
        asyncio.run(main(args.calls, args.concurrency, args.queries))


if __name__ == "__main__":
    cli()
