"""Worker resident memory with N open applications waiting in review, against a bare worker
holding as many waiting workflows.

    .venv/bin/python -m bench.memory --applications 10000

grantflow: the worker runs as its own process (`grantflow worker`, as in production, with its
default workflow cache), the API in this one; N applications are submitted (N Application
workflows and N Review children, each waiting on three offered tasks). Baseline: a bare worker
process, with the same cache size, holding 2N workflows that wait for an Update. Prints each
process's RSS idle and loaded, per open application, and the ratio. Target: grantflow's
worker under 500 MB at 10,000 applications (starting them takes minutes at ~25/s; use a
smaller N to check, and report the size run)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.drive import PARAMS
from bench.harness import Grantflow, create_programme, eventually, grantflow, make_user, ok, servers
from bench.latency import Waiter, noop
from grantflow.dev.embedded import find_binary
from schemas.common import Role
from tests.support import application_body

CACHE = 1000  # build_worker's default max_cached_workflows, used by both workers


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def settled_rss(pid: int, *, quiet_for: float = 5) -> float:
    """The process's RSS once it has stopped growing for `quiet_for` seconds."""
    last, since = rss_mb(pid), asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - since < quiet_for:
        await asyncio.sleep(1)
        now = rss_mb(pid)
        if now > last + 1:
            last, since = now, asyncio.get_running_loop().time()
    return rss_mb(pid)


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The worker process; its log goes to a file whose path is printed."""
    log = Path(tempfile.gettempdir()) / f"bench-memory-{uuid.uuid4().hex[:8]}.log"
    print(f"  {argv[-1]}: log in {log}", flush=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def submit(gf: Grantflow, n: int, concurrency: int) -> None:
    admin = await make_user(gf.pool, Role.admin)
    specialty = f"oncology-{uuid.uuid4().hex[:6]}"
    programme = await create_programme(gf, admin, specialty, PARAMS, name="Memory bench")
    for _ in range(6):
        await make_user(gf.pool, Role.reviewer, specialty=specialty)
    applicants = [await make_user(gf.pool, Role.applicant) for _ in range(max(1, n // 100))]
    gate = asyncio.Semaphore(concurrency)

    retried = 0

    async def one(i: int) -> None:
        nonlocal retried
        async with gate:
            applicant = applicants[i % len(applicants)]
            for attempt in range(5):
                # A 5xx (a workflow task failed on a starved machine and is being retried) is
                # retried as a client would, with the same key: the same application.
                response = await gf.api.post(
                    "/v1/applications",
                    json=application_body(programme["id"], specialty=specialty),
                    headers={**applicant.headers, "Idempotency-Key": f"memory-{i}"},
                )
                if response.status_code < 500 or attempt == 4:
                    break
                retried += 1
                await asyncio.sleep(1)
            ok(response)
            if i and i % 1000 == 0:
                print(f"  {i} applications submitted", flush=True)

    await asyncio.gather(*(one(i) for i in range(n)))
    if retried:
        print(f"  {retried} submissions retried after a 5xx", flush=True)

    async def all_offered() -> bool:
        return bool(await gf.pool.fetchval("SELECT count(*) FROM review_tasks") >= 3 * n)

    await eventually(all_offered, within=600, interval=1)


async def bare(
    client: Client, address: str, workflows: int, concurrency: int
) -> tuple[float, float]:
    queue = f"memory-{uuid.uuid4()}"
    process = spawn([sys.executable, "-m", "bench.memory", "--bare-worker", address, queue], env={})
    try:
        await asyncio.sleep(3)
        idle = await settled_rss(process.pid)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await client.start_workflow(Waiter.run, id=f"{queue}-{i}", task_queue=queue)

        await asyncio.gather(*(one(i) for i in range(workflows)))
        loaded = await settled_rss(process.pid, quiet_for=10)
        return idle, loaded
    finally:
        stop(process)


async def bare_worker(address: str, queue: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[Waiter],
        activities=[noop],
        max_cached_workflows=CACHE,
    )
    await worker.run()


async def main(n: int, concurrency: int) -> dict[str, Any]:
    async with servers() as srv, grantflow(srv, worker=False) as gf:
        address = srv.client.service_client.config.target_host
        env = {
            "TEMPORAL_ADDRESS": address,
            "DATABASE_URL": srv.database_url,
            "GRANTFLOW_TASK_QUEUE": gf.settings.task_queue,
            "GRANTFLOW_LOG_LEVEL": "warning",
        }
        worker = spawn([find_binary("grantflow"), "worker"], env)
        try:
            await asyncio.sleep(3)
            gf_idle = await settled_rss(worker.pid)
            print(f"submitting {n} applications, {concurrency} at a time", flush=True)
            await submit(gf, n, concurrency)
            gf_loaded = await settled_rss(worker.pid, quiet_for=10)
        finally:
            stop(worker)
        bare_idle, bare_loaded = await bare(srv.client, address, 2 * n, concurrency)
    print(f"\nWorker RSS with {n} open applications waiting in review ({2 * n} workflows):")
    print(f"  grantflow worker  idle {gf_idle:7.1f} MB   loaded {gf_loaded:7.1f} MB", end="")
    print(f"   {(gf_loaded - gf_idle) * 1024 / n:6.1f} KB per application")
    print(f"  bare worker       idle {bare_idle:7.1f} MB   loaded {bare_loaded:7.1f} MB", end="")
    print(f"   {(bare_loaded - bare_idle) * 1024 / n:6.1f} KB per 2 workflows")
    print(f"  ratio (loaded)    {gf_loaded / bare_loaded:.2f}   (target: grantflow under 500 MB)")
    return {"grantflow_mb": gf_loaded, "bare_mb": bare_loaded}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--applications", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--bare-worker", nargs=2, metavar=("ADDRESS", "QUEUE"), help="internal")
    args = parser.parse_args()
    if args.bare_worker:
        asyncio.run(bare_worker(*args.bare_worker))
    else:
        asyncio.run(main(args.applications, args.concurrency))


if __name__ == "__main__":
    cli()
