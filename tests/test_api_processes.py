"""`grantflow api --processes 2` as an operator runs it in production: two API processes on one
port, each with its own pool and Temporal client, serving an admin; stopped by one SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from grantflow.dev.embedded import free_port
from schemas.common import Role
from tests.conftest import SESSION, Stack, UserFactory
from tests.support import eventually, programme_body

pytestmark = [SESSION, pytest.mark.system]
GRANTFLOW = Path(sys.executable).parent / "grantflow"
STARTED = re.compile(r"Started server process \[(\d+)\]")


async def test_two_api_processes_serve_one_port(
    stack: Stack, make_user: UserFactory, tmp_path: Path
) -> None:
    admin = await make_user(Role.admin)
    port = free_port()
    log = tmp_path / "api.log"
    env = {
        **os.environ,
        "DATABASE_URL": stack.database_url,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "GRANTFLOW_HOME": str(tmp_path),
        "GRANTFLOW_TASK_QUEUE": stack.settings.task_queue,  # the session's worker
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(GRANTFLOW),
            *("api", "--processes", "2", "--port", str(port)),
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, within=60)
            workers = await eventually(lambda: _two_started(log), within=30)
            # Each process made its own pool and client: each answers, and with its own pid.
            assert len(workers) == 2 and proc.pid not in workers
            assert all(_alive(pid) for pid in workers)
            created = await http.post(
                "/v1/programmes", json=programme_body(), headers=admin.headers
            )
            assert created.status_code == 201, created.text
            listed = await http.get("/v1/programmes", headers=admin.headers)
            assert created.json()["id"] in [p["id"] for p in listed.json()]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    assert code == 0, _read(log)
    assert not any(_alive(pid) for pid in workers)


async def _two_started(log: Path) -> set[int] | None:
    pids = {int(pid) for pid in STARTED.findall(_read(log))}
    return pids if len(pids) >= 2 else None


def _read(log: Path) -> str:
    return log.read_text()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()
