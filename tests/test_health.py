"""What an operator and an integrator see first: /healthz and the API's own documentation."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from grantflow.api.app import create_app
from grantflow.dev.embedded import free_port
from grantflow.services.context import Resources
from tests.conftest import Stack

pytestmark = pytest.mark.system


async def test_healthz_reports_both_servers(stack: Stack) -> None:
    response = await stack.api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "temporal": "ok", "postgres": "ok"}


async def test_healthz_says_which_server_is_down(stack: Stack) -> None:
    dead = await asyncpg.create_pool(f"postgresql://nobody@127.0.0.1:{free_port()}/x", min_size=0)
    assert dead is not None
    app = create_app(stack.settings, Resources(stack.settings, dead, stack.client))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/healthz")
    finally:
        await dead.close()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["temporal"] == "ok"
    assert body["postgres"].startswith("error: ")


async def test_every_endpoint_is_documented(stack: Stack) -> None:
    spec = (await stack.api.get("/openapi.json")).json()
    operations = [
        (method.upper(), path, op)
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
    ]
    assert len(operations) >= 10
    for method, path, op in operations:
        assert op.get("description"), f"{method} {path} has no description"
        if "requestBody" in op:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            model = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert model.get("examples"), f"{method} {path}: {ref} has no example"
    docs = await stack.api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_every_request_gets_an_id_it_can_quote(stack: Stack) -> None:
    mine = await stack.api.get("/healthz", headers={"X-Request-Id": "support-ticket-42"})
    assert mine.headers["x-request-id"] == "support-ticket-42"
    fresh = await stack.api.get("/healthz")
    assert len(fresh.headers["x-request-id"]) == 32
