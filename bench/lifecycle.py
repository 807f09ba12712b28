"""N full grantflow lifecycles through the HTTP API against bare Temporal of the same shape.

    .venv/bin/python -m bench.lifecycle --n 50 [--concurrency 50] [--in-process [--queries]
                                        [--profile out.html]]

grantflow's run: N applications, each submitted, reviewed by three experts, approved in one
council session, its agreement accepted, a pilot run at one clinic, two reports (the second
tranche released between them) and the final report closing it. Then the baseline: from the
run's histories, the same workflows, children, Updates, Signals, timers and activities, with
empty bodies, no HTTP and no PostgreSQL (bench/bare.py), on the same server. Prints the
shape it matched, history events per workflow, both throughputs and their ratio (target:
grantflow at least 0.8 of the baseline).

grantflow runs as in production: `grantflow worker` and `grantflow api` in processes of their
own, so that this process's driver does not compete with the API it measures. With
`--in-process` they run in this process instead (the earlier shape), where the PostgreSQL
round trips per stage (`--queries`: every statement) can be counted and `--profile` sees
them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from bench.bare import Shape, run_baseline, shapes, totals
from bench.drive import cohort, lifecycles
from bench.harness import (
    Grantflow,
    RoundTrips,
    eventually,
    grantflow,
    grantflow_processes,
    servers,
)


async def settled(gf: Grantflow) -> None:
    """Every workflow but the programme's (whose intake is still open) has ended."""

    async def check() -> bool:
        query = (
            f"TaskQueue = '{gf.settings.task_queue}' AND ExecutionStatus = 'Running' "
            "AND WorkflowType != 'Programme'"
        )
        running = [w async for w in gf.servers.client.list_workflows(query)]
        return not running

    await eventually(check, within=60, interval=0.5)


def print_shape(all_shapes: dict[str, Shape], n: int) -> None:
    c = totals(all_shapes)
    print(f"\nShape matched by the baseline (totals over {n} lifecycles; per lifecycle):")
    for key, value in c.items():
        print(f"  {key:26} {value:8d}  {value / n:8.1f}")
    by_type: dict[str, list[Shape]] = defaultdict(list)
    for s in all_shapes.values():
        by_type[s.workflow_type].append(s)
    print("\nPer workflow type (mean per workflow):")
    print(
        f"  {'type':24} {'count':>5} {'events':>7} {'acts':>5} {'timers':>6} {'upd':>4} {'sig':>4}"
    )
    for kind, group in sorted(by_type.items()):
        k = len(group)
        events = sum(s.events for s in group) / k
        acts = sum(s.activities + s.local_activities for s in group) / k
        timers = sum(len(s.timers_fired) + s.timers_cancelled for s in group) / k
        upd = sum(s.updates for s in group) / k
        sig = sum(s.signals_received for s in group) / k
        print(f"  {kind:24} {k:5d} {events:7.1f} {acts:5.1f} {timers:6.1f} {upd:4.1f} {sig:4.1f}")
    apps = [s for s in all_shapes.values() if s.workflow_type == "Application"]
    own = {s.workflow_id: s for s in all_shapes.values()}
    per_app = sum(_tree_events(a, own) for a in apps) / max(1, len(apps))
    print(f"\nHistory events per application (its workflow and its children): {per_app:.1f}")


def _tree_events(s: Shape, own: dict[str, Shape]) -> int:
    return s.events + sum(_tree_events(own[c], own) for c in s.children if c in own)


def print_round_trips(rt: RoundTrips, n: int) -> None:
    total = sum(rt.by_source.values())
    print(f"\nPostgreSQL round trips: {total} in all, {total / n:.1f} per lifecycle")
    print("  (API GETs include the driver's polling; activities are the worker's writes)")
    for source, count in sorted(rt.by_source.items(), key=lambda kv: -kv[1]):
        print(f"  {source:38} {count:7d}  {count / n:7.1f} per lifecycle")
    worker = sum(v for k, v in rt.by_source.items() if k.startswith("activity:"))
    writes = sum(v for k, v in rt.by_source.items() if k.endswith(" POST"))
    print(f"  {'activities, all':38} {worker:7d}  {worker / n:7.1f} per lifecycle")
    print(f"  {'API POSTs, all':38} {writes:7d}  {writes / n:7.1f} per lifecycle")


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled", interval=0.001)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        with open(path, "w") as out:
            out.write(profiler.output_html() if path.endswith(".html") else profiler.output_text())
        print(f"\nprofile of the grantflow run written to {path}")


async def main(
    n: int, concurrency: int, profile: str | None, queries: bool, in_process: bool = False
) -> dict[str, Any]:
    async with servers() as srv, (grantflow if in_process else grantflow_processes)(srv) as gf:
        c = await cohort(gf, n)
        gf.round_trips.reset()
        loop = asyncio.get_running_loop()
        with profiled(profile):
            began = loop.time()
            await lifecycles(c, concurrency=concurrency)
            grantflow_s = loop.time() - began
        await settled(gf)
        all_shapes = await shapes(srv.client, gf.settings.task_queue)
        print_shape(all_shapes, n)
        if in_process:
            print_round_trips(gf.round_trips, n)
        if queries:
            gf.round_trips.print_queries(n)
        baseline_s = await run_baseline(srv.client, all_shapes, f"bare-{uuid.uuid4()}")
    print("\nWall time per stage of a grantflow lifecycle (mean, max; waits included):")
    for name, spent in sorted(c.seconds.items()):
        print(f"  {name:36} {sum(spent) / len(spent):7.2f} s {max(spent):7.2f} s")
    gf_rate, bare_rate = n / grantflow_s, n / baseline_s
    print(f"\n{n} lifecycles, {concurrency} at a time")
    print(f"  grantflow      {grantflow_s:8.2f} s  {gf_rate:8.3f} lifecycles/s")
    print(f"  bare Temporal  {baseline_s:8.2f} s  {bare_rate:8.3f} lifecycles/s")
    print(f"  ratio          {gf_rate / bare_rate:8.2f}  (target: at least 0.80)")
    return {"grantflow_s": grantflow_s, "baseline_s": baseline_s}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="lifecycles (default 50)")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="lifecycles at a time (default: all)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the worker and the API in this process: round trips counted, profiled",
    )
    parser.add_argument("--profile", help="write a pyinstrument profile (.html or .txt)")
    parser.add_argument(
        "--queries", action="store_true", help="print every statement per lifecycle"
    )
    args = parser.parse_args()
    if (args.profile or args.queries) and not args.in_process:
        parser.error("--profile and --queries see grantflow only with --in-process")
    asyncio.run(
        main(args.n, args.concurrency or args.n, args.profile, args.queries, args.in_process)
    )


if __name__ == "__main__":
    cli()
