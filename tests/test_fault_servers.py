"""A server goes away mid-lifecycle and comes back: the Temporal server (an embedded dev server
this test starts on a persistent SQLite file, not the session's), or PostgreSQL (one of this
test's, on a data directory of its own). While it is down the API answers 503 with the reason,
never a 500; when it is back every application reaches the end its users led it to, and
whatever the API had answered 2xx before the outage is still there."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from grantflow.dev.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from grantflow.dev.stack import connect_with_retry
from schemas.common import Stage
from tests.conftest import SESSION, Stack, application_body
from tests.faults import Cohort, duplicates, final_state, own_stack, reached, settled, until

pytestmark = [SESSION, pytest.mark.slow]
SEED = 88
APPLICATIONS = 6
DOWN_FOR = 1.0  # seconds the server stays away after the API's answers were checked


async def outage_during(
    stack: Stack,
    cohort: Cohort,
    stop: Callable[[], object],
    start: Callable[[], object],
    message: str,
) -> list[Any]:
    """Run the cohort; once it is under way, stop the server, check what the API answers while
    it is down, start it again. Returns the applications the API had created before."""
    running = asyncio.create_task(cohort.run())
    await cohort.started.wait()

    async def under_way() -> bool:
        return bool(await stack.pool.fetchval("SELECT count(*) >= 2 FROM applications"))

    await until(under_way, what="the first applications on record")
    await asyncio.sleep(random.Random(SEED).uniform(0.2, 1.0))
    created = await stack.pool.fetch("SELECT id, stage FROM applications")
    # Mid-lifecycle: the cohort still running, with applications on record still open.
    assert not running.done()
    assert any(not Stage(row["stage"]).is_final for row in created), created
    await asyncio.to_thread(stop)
    try:
        while_down = await asyncio.wait_for(answers_while_down(stack, cohort), 60)
        await asyncio.sleep(DOWN_FOR)
    finally:
        await asyncio.to_thread(start)
    submitted, listed = while_down
    assert submitted.status_code == 503, submitted.text
    assert submitted.json()["detail"] == message
    # A read from PostgreSQL does not need Temporal; without PostgreSQL it is a 503 too.
    if "database" in message:
        assert listed.status_code == 503 and listed.json()["detail"] == message, listed.text
    else:
        assert listed.status_code == 200, listed.text
    await running
    await settled(stack)
    return created


async def answers_while_down(stack: Stack, cohort: Cohort) -> list[Any]:
    """What a user gets from the API during the outage: a submission and a read."""
    applicant = cohort.applicants[0]
    body = application_body(cohort.council.programme["id"], specialty=cohort.council.specialty)
    submitted = await stack.api.post("/v1/applications", json=body, headers=applicant.headers)
    listed = await stack.api.get("/v1/applications", headers=applicant.headers)
    return [submitted, listed]


def assert_everything_completed(cohort: Cohort, state: list[dict[str, Any]]) -> None:
    assert reached(cohort, state) == {}
    assert not [code for code in cohort.statuses if code >= 500 and code != 503]


@pytest.mark.timeout(240)
async def test_temporal_restarted_mid_lifecycle(postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    temporal = EmbeddedTemporal(tmp_path / "temporal.db", free_port(), None)
    temporal.start()
    try:
        client = await connect_with_retry(temporal.address, "default")
        async with own_stack(client, postgres.url) as stack:
            cohort = Cohort(stack, SEED, APPLICATIONS)
            message = "the workflow service is unavailable; try again shortly"
            await outage_during(stack, cohort, temporal.stop, temporal.start, message)
            state = await final_state(stack.pool)
            # Only the cohort's: the submission during the outage made nothing.
            assert len(state) == APPLICATIONS
            assert_everything_completed(cohort, state)
            assert await duplicates(stack.pool) == {}
    finally:
        temporal.stop()


@pytest.mark.timeout(240)
async def test_postgres_restarted_mid_lifecycle(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg" / "data", free_port(), durable=True)
    server.start()
    try:
        async with own_stack(temporal_env.client, server.url) as stack:
            cohort = Cohort(stack, SEED, APPLICATIONS)
            message = "the database is unavailable; try again shortly"
            created = await outage_during(
                stack, cohort, lambda: server.stop(), lambda: server.start(), message
            )
            state = await final_state(stack.pool)
            assert_everything_completed(cohort, state)
            # Every application answered 2xx before the restart is still there.
            ids = {row["id"] for row in await stack.pool.fetch("SELECT id FROM applications")}
            assert {row["id"] for row in created} <= ids
            assert await duplicates(stack.pool) == {}
    finally:
        server.stop()
