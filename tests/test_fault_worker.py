"""The worker process dies (SIGKILL, as the OOM killer would) or is stopped (SIGTERM, as an
orchestrator does) while a cohort of applications is mid-lifecycle: nothing is lost, nothing is
written twice, and every application ends as it does in a run without faults.

The worker runs as production runs it (`grantflow worker`, a process of its own) on the
session's Temporal server, with a database and a task queue of its own, so the session's
in-process worker never takes its work."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from grantflow.dev.embedded import EmbeddedPostgres
from tests.conftest import SESSION
from tests.faults import (
    Cohort,
    WorkerProcess,
    duplicates,
    final_state,
    own_stack,
    settled,
    stages,
    until,
)

pytestmark = [SESSION, pytest.mark.slow]
SEED = 8
APPLICATIONS = 18
KILLS = 3
WRITE_TIMEOUT = 30.0  # workflows/options.py: how long a crashed worker's activity is waited for


async def cohort_run(
    env: WorkflowEnvironment, postgres: EmbeddedPostgres, log: Path, *, kills: int
) -> tuple[list[dict[str, object]], dict[str, list[object]], int]:
    """One run of the seeded cohort; with `kills`, SIGKILL the worker that many times at
    seeded random moments and start it again at once. Returns the final state, the duplicated
    business keys, and how many times the worker was started."""
    async with own_stack(env.client, postgres.url, worker=False) as stack:
        worker = WorkerProcess(stack, log)
        worker.start()
        rng = random.Random(SEED)

        async def chaos() -> None:
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                worker.kill()
                await asyncio.sleep(rng.uniform(0, 0.5))
                worker.start()

        try:
            cohort = Cohort(stack, SEED, APPLICATIONS)
            await asyncio.gather(cohort.run(), chaos())
            await settled(stack)
            return await final_state(stack.pool), await duplicates(stack.pool), worker.starts
        except BaseException:
            print(worker.output())
            raise
        finally:
            worker.stop()


@pytest.mark.timeout(300)
async def test_a_killed_worker_loses_nothing_and_writes_nothing_twice(
    temporal_env: WorkflowEnvironment, postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    expected, clean_duplicates, _ = await cohort_run(
        temporal_env, postgres, tmp_path / "fault-free.log", kills=0
    )
    assert clean_duplicates == {}
    assert len(expected) == APPLICATIONS
    # The seed makes every fate appear, so the comparison below covers each path.
    # (a declined agreement withdraws its application)
    assert set(stages(expected)) == {"agreement", "rejected", "deferred", "withdrawn"}
    assert "agreement_declined" in str(expected) and "council_deferred" in str(expected)

    found, found_duplicates, starts = await cohort_run(
        temporal_env, postgres, tmp_path / "killed.log", kills=KILLS
    )
    assert starts == KILLS + 1
    assert found_duplicates == {}
    assert found == expected


@pytest.mark.timeout(180)
async def test_sigterm_hands_back_in_flight_work_and_a_restart_finishes_it_promptly(
    temporal_env: WorkflowEnvironment, postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    async with own_stack(temporal_env.client, postgres.url, worker=False) as stack:
        worker = WorkerProcess(stack, tmp_path / "worker.log")
        worker.start()
        try:
            cohort = Cohort(stack, SEED + 1, 8)
            running = asyncio.create_task(cohort.run())

            async def working() -> bool:  # the worker is up and offering applications to review
                return bool(await stack.pool.fetchval("SELECT count(*) FROM notifications"))

            await until(working, what="the worker's first writes")
            assert not running.done(), "the cohort finished before the worker was stopped"
            code = await asyncio.to_thread(worker.terminate, 15.0)  # graceful timeout: 10 s
            assert code == 0, worker.output()
            assert "shutting down" in worker.output()
            worker.start()
            queue = stack.settings.task_queue
            await until(lambda: worker.polling(stack.client, queue), what="the new worker up")
            # Work handed back is taken up by the new worker at once: no activity waits for
            # its timeout, as it would after a crash.
            await asyncio.wait_for(running, timeout=WRITE_TIMEOUT)
            await settled(stack, within=WRITE_TIMEOUT)
            state = await final_state(stack.pool)
            assert len(state) == 8 and await duplicates(stack.pool) == {}
            stuck = [r for r in state if r["stage"] in ("submitted", "screening", "under_review")]
            assert stuck == []
        except BaseException:
            print(worker.output())
            raise
        finally:
            worker.stop()
