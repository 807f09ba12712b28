"""What an orchestrator asks: /livez (the process answers) and /readyz (its servers answer),
with a server down; /healthz stays as it was (tests/test_health.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from grantflow.api.app import create_app
from grantflow.dev.embedded import free_port
from grantflow.services.context import Resources
from tests.conftest import Stack

pytestmark = pytest.mark.system


@asynccontextmanager
async def api_with(
    stack: Stack, pool: asyncpg.Pool, client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack.settings, Resources(stack.settings, pool, client))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        yield api


async def nobody_pool() -> asyncpg.Pool:
    pool = await asyncpg.create_pool(f"postgresql://nobody@127.0.0.1:{free_port()}/x", min_size=0)
    assert pool is not None
    return pool


async def test_both_probes_pass_while_both_servers_answer(stack: Stack) -> None:
    live = await stack.api.get("/livez")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await stack.api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "temporal": "ok", "postgres": "ok"}


async def test_postgresql_down_the_process_is_alive_but_not_ready(stack: Stack) -> None:
    dead = await nobody_pool()
    try:
        async with api_with(stack, dead, stack.client) as api:
            live, ready = await api.get("/livez"), await api.get("/readyz")
    finally:
        await dead.close()
    assert live.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable" and body["temporal"] == "ok"
    assert body["postgres"].startswith("error: ")


async def test_temporal_down_says_so(stack: Stack) -> None:
    # A client of a server that is gone: the session's own cannot be stopped for one test.
    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    async with api_with(stack, stack.pool, nowhere) as api:
        live, ready = await api.get("/livez"), await api.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["postgres"] == "ok" and body["temporal"].startswith("error: ")


async def test_metrics_and_probes_are_not_part_of_the_api_documentation(stack: Stack) -> None:
    paths = (await stack.api.get("/openapi.json")).json()["paths"]
    assert "/livez" in paths and "/readyz" in paths
    assert "/metrics" not in paths
    scraped = await stack.api.get("/metrics")
    assert scraped.status_code == 200 and "grantflow_http_requests_total" in scraped.text
