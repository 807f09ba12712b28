"""The `grantflow` command as an operator uses it in a second terminal, against the running
stack: migrations applied once, users created with a token that works, bad input refused."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import SESSION, Stack

pytestmark = SESSION
GRANTFLOW = Path(sys.executable).parent / "grantflow"
MIGRATIONS = sorted((Path(__file__).parent.parent / "migrations").glob("*.sql"))


@dataclass
class Run:
    code: int
    out: str
    err: str


async def grantflow(stack: Stack, tmp_path: Path, *args: str) -> Run:
    env = {
        **os.environ,
        "DATABASE_URL": stack.database_url,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "GRANTFLOW_HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        str(GRANTFLOW),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_migrate_twice_applies_nothing_the_second_time(stack: Stack, tmp_path: Path) -> None:
    applied = await stack.pool.fetchval("SELECT count(*) FROM schema_migrations")
    for _ in range(2):
        run = await grantflow(stack, tmp_path, "migrate")
        assert run.code == 0, run.err + run.out
        assert "up to date" in run.out
    assert await stack.pool.fetchval("SELECT count(*) FROM schema_migrations") == applied
    assert applied == len(MIGRATIONS)


async def test_users_create_prints_a_token_that_authenticates(stack: Stack, tmp_path: Path) -> None:
    run = await grantflow(
        stack,
        tmp_path,
        "users",
        "create",
        "--role",
        "coordinator",
        "--name",
        "Dr. Anna Petrova",
        "--institution",
        "City Polyclinic 3",
    )
    assert run.code == 0, run.err + run.out
    token = run.out.strip().splitlines()[-1]
    assert token.startswith("gf_")
    me = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "coordinator" and me.json()["name"] == "Dr. Anna Petrova"
    assert me.json()["institution_id"] == "city-polyclinic-3"


async def test_bad_input_exits_non_zero_and_creates_no_user(stack: Stack, tmp_path: Path) -> None:
    before = await stack.pool.fetchval("SELECT count(*) FROM users")
    wizard = await grantflow(stack, tmp_path, "users", "create", "--role", "wizard", "--name", "X")
    assert wizard.code == 2 and "wizard" in wizard.err
    no_name = await grantflow(stack, tmp_path, "users", "create", "--role", "admin")
    assert no_name.code == 2 and "--name" in no_name.err
    reviewer = await grantflow(
        stack,
        tmp_path,
        "users",
        "create",
        "--role",
        "reviewer",
        "--name",
        "No Specialty",
        "--institution",
        "Clinic 1",
    )
    assert reviewer.code == 2 and "specialty" in reviewer.out
    assert await stack.pool.fetchval("SELECT count(*) FROM users") == before
