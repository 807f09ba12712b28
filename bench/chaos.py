"""Chaos soak: simulated competitions (grantflow/simulation) run for `--minutes` while the
worker is SIGKILLed every 30 s and PostgreSQL is crashed (every process SIGKILLed: WAL recovery
at the next start) twice; then, with the faults over and the last competition finished, every
application must be final, the budget ledger must balance, no business key may be on record
twice, `grantflow check --all` must find workflows and rows agreeing, and every workflow
history must replay on today's code. Prints a summary; exits 1 if any check fails.

    .venv/bin/python -m bench.chaos --minutes 3

Not part of `make test`: it runs for minutes, on embedded servers of its own in a temporary
folder (kept with `--keep`, for its logs), with `grantflow worker` and `grantflow api` as
processes of their own, as production runs them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from grantflow.dev.stack import DATABASE, connect_with_retry, ensure_database, prepare
from grantflow.services.translate import local_activity_data
from grantflow.settings import Settings
from grantflow.simulation.http import Api, SimulationError
from grantflow.simulation.run import Options, simulate
from schemas.common import Stage
from tests import support
from tests.support import GRANTFLOW, GrantflowProcess
from workers.main import WORKFLOWS
from workers.sandbox import sandbox_runner

PATIENCE = 300.0  # how long a user keeps coming back through an outage, s
E = EventType


class PatientApi(Api):
    """The soak's users: through an outage they come back after a 503, a 429 or a dropped
    connection for minutes, as people do, not for the simulator's few seconds."""

    async def call(
        self,
        method: str,
        url: str,
        who: Any,
        body: Any = None,
        *,
        wait: float = 60,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                return await super().call(method, url, who, body, wait=wait, headers=headers)
            except (SimulationError, httpx.TransportError) as exc:
                busy = isinstance(exc, httpx.TransportError) or any(
                    f" → {code}: " in str(exc) for code in (503, 429)
                )
                if not busy or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(2)


class Process(GrantflowProcess):
    """`grantflow <command>` against the soak's servers; its output in `<home>/<command>.log`."""

    def __init__(self, home: Path, command: str, settings: Settings) -> None:
        assert settings.database_url and settings.temporal_address
        env = os.environ | {
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "DATABASE_URL": settings.database_url,
            "GRANTFLOW_HOME": str(home),
            "GRANTFLOW_API_PORT": str(settings.api_port),
            "GRANTFLOW_LOG_FORMAT": "json",
        }
        super().__init__(command, env, home / f"{command}.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def crash_postgres(pg: EmbeddedPostgres) -> None:
    """SIGKILL to the postmaster, then to every process it forked (each backend is a session
    of its own, out of the postmaster's process group)."""
    assert pg.process is not None
    postmaster = pg.process.pid
    os.kill(postmaster, signal.SIGKILL)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                os.kill(int(stat.parent.name), signal.SIGKILL)
    pg.process.wait()


def restart_postgres(pg: EmbeddedPostgres) -> float:
    """Start it again (after its orphans are gone); how long it took, recovery included."""
    started = time.monotonic()
    for attempt in range(10):
        try:
            pg.start()
            return time.monotonic() - started
        except RuntimeError:  # the shared memory of a backend not gone yet
            if attempt == 9:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


@dataclass
class Chaos:
    """The faults dealt, and how it went."""

    killed: list[str] = field(default_factory=list)  # the killed workers' identities
    crashes: list[float] = field(default_factory=list)  # seconds each restart took
    competitions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def deal_faults(
    worker: Process, pg: EmbeddedPostgres, chaos: Chaos, minutes: float, every: float, crashes: int
) -> None:
    """SIGKILL the worker every `every` s (and start it again at once); crash PostgreSQL
    `crashes` times, spread over the window, half a period away from the kills."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + minutes * 60
    crash_at = [start + (i + 1) * (end - start) / (crashes + 1) + every / 2 for i in range(crashes)]
    next_kill = start + every
    while loop.time() < end:
        if crash_at and loop.time() >= crash_at[0]:
            crash_at.pop(0)
            await asyncio.to_thread(crash_postgres, pg)
            chaos.crashes.append(await asyncio.to_thread(restart_postgres, pg))
        if loop.time() >= next_kill:
            chaos.killed.append(worker.identity)
            worker.kill()
            worker.start()
            next_kill += every
        await asyncio.sleep(0.2)


async def play(
    pool: asyncpg.Pool,
    client: Client,
    url: str,
    options: Options,
    chaos: Chaos,
    done: asyncio.Event,
) -> None:
    """Competitions one after the other until the faults are over."""
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        seed = options.seed
        while not done.is_set() or not chaos.competitions:
            run = Options(**{**options.__dict__, "seed": seed})
            try:
                figures = await simulate(pool, client, PatientApi(http), run)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The simulator's own reads (its figures) caught an outage: the competition
                # itself is checked below, with the others.
                figures = {"seed": seed, "figures_lost": repr(exc)}
            except SimulationError as exc:
                chaos.errors.append(f"competition {seed}: {exc}")
                figures = {"seed": seed, "error": str(exc)}
            chaos.competitions.append(figures)
            seed += 1


# --- the checks -------------------------------------------------------------------------------

# Per programme: what approvals hold (reserved less released) within the budget; per
# application: never more paid or released than reserved, nothing held once final, and the
# tranches released are what the ledger paid out.
PROGRAMME_LEDGER_SQL = """
SELECT p.id FROM programmes p LEFT JOIN ledger_entries l ON l.programme_id = p.id
GROUP BY p.id, p.budget_rub
HAVING coalesce(sum(CASE l.kind WHEN 'reserve' THEN l.amount_rub
                                WHEN 'release' THEN -l.amount_rub ELSE 0 END), 0)
       NOT BETWEEN 0 AND p.budget_rub"""
APPLICATION_LEDGER_SQL = """
SELECT a.id, a.stage,
       sum(CASE l.kind WHEN 'reserve' THEN l.amount_rub ELSE -l.amount_rub END) AS held,
       coalesce(sum(l.amount_rub) FILTER (WHERE l.kind = 'disburse'), 0) AS paid,
       (SELECT coalesce(sum(t.amount_rub), 0) FROM tranches t
        WHERE t.application_id = a.id AND t.status = 'released') AS released
FROM applications a JOIN ledger_entries l ON l.application_id = a.id
GROUP BY a.id, a.stage"""


async def unbalanced(pool: asyncpg.Pool) -> list[str]:
    found = [f"programme {r['id']} over budget" for r in await pool.fetch(PROGRAMME_LEDGER_SQL)]
    for r in await pool.fetch(APPLICATION_LEDGER_SQL):
        if r["held"] < 0 or (Stage(r["stage"]).is_final and r["held"] != 0):
            found.append(f"application {r['id']} ({r['stage']}) holds {r['held']}")
        if r["paid"] != r["released"]:
            found.append(f"application {r['id']} paid {r['paid']}, tranches {r['released']}")
    return found


async def duplicates(pool: asyncpg.Pool) -> dict[str, int]:
    return {table: len(keys) for table, keys in (await support.duplicates(pool)).items()}


def consistency(settings: Settings) -> dict[str, Any]:
    """`grantflow check --all --json`, as an admin runs it."""
    assert settings.database_url and settings.temporal_address
    env = os.environ | {
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "DATABASE_URL": settings.database_url,
    }
    done = subprocess.run(
        [str(GRANTFLOW), "check", "--all", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found: dict[str, Any] = json.loads(done.stdout or "{}")
    return found | {"exit_code": done.returncode}


async def histories(client: Client) -> list[WorkflowHistory]:
    runs = [(e.id, e.run_id) async for e in client.list_workflows()]
    gate = asyncio.Semaphore(16)

    async def fetch(workflow_id: str, run_id: str | None) -> WorkflowHistory:
        async with gate:
            return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()

    return list(await asyncio.gather(*(fetch(*r) for r in runs)))


async def replay_failures(found: list[WorkflowHistory]) -> list[str]:
    async def each() -> Any:
        for history in found:
            yield history

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(WORKFLOWS),
    )
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    return [f"{run}: {error}" for run, error in results.replay_failures.items()]


def work_cut_short(found: list[WorkflowHistory], killed: list[str]) -> Counter[str]:
    """What the histories show the faults cut short: workflow tasks timed out (by kind of
    timeout; those a killed worker held), workflow tasks retried, activities and local
    activities run again."""
    seen: Counter[str] = Counter()
    for history in found:
        events = {e.event_id: e for e in history.events}
        for e in history.events:
            if e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                attrs = e.workflow_task_timed_out_event_attributes
                kind = TimeoutType.Name(attrs.timeout_type).removeprefix("TIMEOUT_TYPE_")
                seen[f"workflow task timed out, {kind}"] += 1
                started = events.get(attrs.started_event_id)
                if started and started.workflow_task_started_event_attributes.identity in killed:
                    seen["workflow task a killed worker held"] += 1
            elif (data := local_activity_data(e)) and int(data.get("attempt") or 1) > 1:
                seen["local activity retried"] += 1
            elif e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                if e.workflow_task_scheduled_event_attributes.attempt > 1:
                    seen["workflow task retried"] += 1
            elif (
                e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED
                and e.activity_task_started_event_attributes.attempt > 1
            ):
                seen["activity retried"] += 1
    return seen


async def checks(
    pool: asyncpg.Pool, client: Client, settings: Settings, killed: list[str]
) -> dict[str, Any]:
    stages = {r["stage"]: r["n"] for r in await pool.fetch(
        "SELECT stage, count(*)::int AS n FROM applications GROUP BY stage ORDER BY stage"
    )}  # fmt: skip
    found = await histories(client)
    return {
        "applications": sum(stages.values()),
        "stages": stages,
        "all_final": all(Stage(s).is_final for s in stages),
        "ledger": await unbalanced(pool),
        "duplicates": await duplicates(pool),
        "check": await asyncio.to_thread(consistency, settings),
        "workflow_histories": len(found),
        "replay_failures": await replay_failures(found),
        "cut_short": dict(work_cut_short(found, killed)),
    }


async def settle(client: Client, within: float = 300) -> None:
    """Until no workflow has a task or an activity pending."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        busy = False
        async for e in client.list_workflows("ExecutionStatus = 'Running'"):
            raw = (
                await client.get_workflow_handle(e.id, run_id=e.run_id).describe()
            ).raw_description
            if raw.pending_activities or raw.HasField("pending_workflow_task"):
                busy = True
                break
        if not busy:
            return
        await asyncio.sleep(2)


# --- the soak ---------------------------------------------------------------------------------


async def soak(home: Path, args: argparse.Namespace) -> dict[str, Any]:
    pg = EmbeddedPostgres(home / "postgres" / "data", free_port(), durable=True)
    temporal = EmbeddedTemporal(home / "temporal.db", free_port(), None)
    server_url = await asyncio.to_thread(pg.start)
    await ensure_database(server_url, DATABASE)
    settings = Settings(
        home=home,
        database_url=server_url.rsplit("/", 1)[0] + "/" + DATABASE,
        temporal_address=await asyncio.to_thread(temporal.start),
        api_port=free_port(),
    )
    await prepare(settings)
    worker, api = Process(home, "worker", settings), Process(home, "api", settings)
    worker.start()
    api.start()
    chaos = Chaos()
    started = time.monotonic()
    try:
        client = await connect_with_retry(str(settings.temporal_address), "default")
        pool = await create_pool(str(settings.database_url), max_size=4)
        options = Options(
            applications=args.applications,
            institutions=max(2, args.applications // 4),
            reviewers=40,
            clinics=8,
            seed=args.seed,
            timeout=args.minutes * 60 + 900,
        )
        over = asyncio.Event()
        playing = asyncio.create_task(
            play(
                pool,
                client,
                f"http://{settings.api_host}:{settings.api_port}",
                options,
                chaos,
                over,
            )
        )
        await asyncio.sleep(5)  # the API up
        await deal_faults(worker, pg, chaos, args.minutes, args.kill_every, args.crashes)
        over.set()
        faults_over = time.monotonic() - started
        await playing
        await settle(client)
        found = await checks(pool, client, settings, chaos.killed)
        await pool.close()
    finally:
        api.stop()
        worker.stop()
        temporal.stop()
        pg.stop()
    return {
        "minutes_of_faults": round(faults_over / 60, 1),
        "minutes_in_all": round((time.monotonic() - started) / 60, 1),
        "worker_kills": len(chaos.killed),
        "postgres_crashes": len(chaos.crashes),
        "postgres_restart_s": [round(s, 1) for s in chaos.crashes],
        "postgres_recoveries": (home / "postgres" / "postgres.log")
        .read_text(errors="replace")
        .count("automatic recovery in progress"),
        "competitions": [
            {k: c.get(k) for k in ("seed", "applications", "all_final", "consistent", "error")}
            for c in chaos.competitions
        ],
        "errors": chaos.errors,
        **found,
    }


def passed(summary: dict[str, Any]) -> bool:
    return bool(
        summary["all_final"]
        and not summary["ledger"]
        and not summary["duplicates"]
        and summary["check"].get("exit_code") == 0
        and not summary["replay_failures"]
        and not summary["errors"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long faults are dealt")
    parser.add_argument("--applications", type=int, default=30, help="per competition")
    parser.add_argument("--seed", type=int, default=1, help="of the first competition")
    parser.add_argument("--kill-every", type=float, default=30, help="seconds between kills")
    parser.add_argument("--crashes", type=int, default=2, help="PostgreSQL crashes")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs, data)")
    args = parser.parse_args()
    # Its own pool's attempts to reconnect while PostgreSQL is down are expected: not shown.
    logging.getLogger("asyncpg").setLevel(logging.CRITICAL)
    home = Path(tempfile.mkdtemp(prefix="grantflow-chaos-"))
    try:
        summary = asyncio.run(soak(home, args))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    summary["passed"] = passed(summary)
    print(json.dumps(summary, indent=2, default=str))
    sys.exit(0 if summary["passed"] else 1)


if __name__ == "__main__":
    main()
