"""A stack of its own beside the session's: its own database, worker and task queue on the
session's servers. For tests that need the database quiet (table digests) or that let a fuzzer
write whatever it likes without other tests seeing it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.testing import WorkflowEnvironment

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.services.context import Resources
from grantflow.settings import Settings
from tests.conftest import (
    RecordingSender,
    Stack,
    fresh_database,
    record_histories,
    recording,
)
from workers.main import build_worker


@asynccontextmanager
async def isolated_stack(
    postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment, name: str
) -> AsyncIterator[Stack]:
    database_url = await fresh_database(postgres.url, f"{name}_{uuid.uuid4().hex[:8]}")
    settings = Settings(
        task_queue=f"tq-{name}-{uuid.uuid4()}",
        database_url=database_url,
        temporal_address="unused-in-process",
    )
    pool = await create_pool(database_url, min_size=2, max_size=20)
    worker_pool = await create_pool(database_url, min_size=2, max_size=10)
    sender = RecordingSender()
    worker = build_worker(temporal_env.client, worker_pool, settings.task_queue, sender=sender)
    app = create_app(settings, Resources(settings, pool, temporal_env.client))
    try:
        async with (
            worker,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://grantflow.test"
            ) as api,
        ):
            yield Stack(
                settings, temporal_env.client, pool, api, database_url, postgres.url, sender
            )
            if recording():
                await record_histories(temporal_env.client, settings.task_queue)
    finally:
        await pool.close()
        await worker_pool.close()
