"""The `grantflow` command as an operator uses it in a second terminal, against the running
stack: migrations applied once, users created with a token that works, bad input refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import SESSION, Stack

pytestmark = [SESSION, pytest.mark.system]
GRANTFLOW = Path(sys.executable).parent / "grantflow"
MIGRATIONS = sorted((Path(__file__).parent.parent / "grantflow" / "migrations").glob("*.sql"))


@dataclass
class Run:
    code: int
    out: str
    err: str


async def grantflow(
    stack: Stack, tmp_path: Path, *args: str, database_url: str | None = None
) -> Run:
    """One `grantflow` command in a subprocess (each runs its own event loop), pointed at the
    test session's servers the way an operator points it at real ones."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url or stack.database_url,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "GRANTFLOW_HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    return await _run(env, tmp_path, *args)


async def _run(env: dict[str, str], cwd: Path, *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(GRANTFLOW),
        *args,
        env=env,
        cwd=cwd,  # no stray .env from the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@pytest.mark.slow
async def test_migrate_twice_applies_nothing_the_second_time(stack: Stack, tmp_path: Path) -> None:
    name = f"migrate_{uuid.uuid4().hex[:8]}"  # an empty database, as on a first deployment
    conn = await asyncpg.connect(stack.server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = stack.server_url.rsplit("/", 1)[0] + "/" + name

    first = await grantflow(stack, tmp_path, "migrate", database_url=url)
    assert first.code == 0, first.err + first.out
    assert "up to date" in first.err
    assert "migrations applied" in first.err
    versions = [int(p.name[:4]) for p in MIGRATIONS]
    assert f"versions={versions}" in first.err

    conn = await asyncpg.connect(url)
    try:
        ledger = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in ledger] == versions
        second = await grantflow(stack, tmp_path, "migrate", database_url=url)
        assert second.code == 0, second.err + second.out
        assert "up to date" in second.err
        assert "migrations applied" not in second.err  # nothing to apply
        assert await conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == ledger
        assert await conn.fetchval("SELECT count(*) FROM users") == 0  # no demo users here
    finally:
        await conn.close()


@pytest.mark.slow
async def test_migrate_on_the_session_database_changes_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    ledger = await stack.pool.fetch("SELECT * FROM schema_migrations ORDER BY version")
    assert len(ledger) == len(MIGRATIONS)
    run = await grantflow(stack, tmp_path, "migrate")
    assert run.code == 0, run.err + run.out
    assert "migrations applied" not in run.err
    assert await stack.pool.fetch("SELECT * FROM schema_migrations ORDER BY version") == ledger


@pytest.mark.parametrize(
    ("args", "role", "institution_id", "specialty"),
    [
        (
            [
                *("--role", "reviewer", "--name", "Dr. Irina Volkova"),
                *("--institution", "City Clinical Hospital 52", "--specialty", "cardiology"),
            ],
            "reviewer",
            "city-clinical-hospital-52",
            "cardiology",
        ),
        (
            [
                *("--role", "coordinator", "--name", "Dr. Anna Petrova"),
                *("--institution", "City Polyclinic 3"),
            ],
            "coordinator",
            "city-polyclinic-3",
            None,
        ),
        (["--role", "admin", "--name", "Admin Two"], "admin", None, None),
    ],
    ids=["reviewer", "coordinator", "admin"],
)
async def test_users_create_prints_a_token_that_authenticates(
    stack: Stack,
    tmp_path: Path,
    args: list[str],
    role: str,
    institution_id: str | None,
    specialty: str | None,
) -> None:
    run = await grantflow(stack, tmp_path, "users", "create", *args)
    assert run.code == 0, run.err + run.out
    token = run.out.strip().splitlines()[-1]
    assert token.startswith("gf_")
    assert (run.out + run.err).count(token) == 1  # printed once
    me = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    user = me.json()
    name = args[args.index("--name") + 1]
    assert (user["role"], user["name"]) == (role, name)
    assert (user["institution_id"], user["specialty"]) == (institution_id, specialty)
    assert f"created {role} {name} ({user['id']})" in run.err
    stored = await stack.pool.fetchval(
        "SELECT token_hash FROM users WHERE id = $1", uuid.UUID(user["id"])
    )
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()  # hash only


async def test_an_admin_sets_a_tokens_life_rotates_it_and_revokes_it(
    stack: Stack, tmp_path: Path
) -> None:
    made = await grantflow(
        stack,
        tmp_path,
        *("users", "create", "--role", "council", "--name", "Dr. Oleg Ivanov"),
        *("--expires-in-days", "30"),
    )
    assert made.code == 0, made.err + made.out
    first = made.out.strip()
    user = (await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {first}"})).json()
    expires = datetime.now(UTC) + timedelta(days=30)
    assert f"its token expires {expires:%Y-%m-%d}" in made.err

    rotated = await grantflow(stack, tmp_path, "users", "token", "rotate", user["id"])
    assert rotated.code == 0, rotated.err + rotated.out
    second = rotated.out.strip()
    assert second.startswith("gf_") and second != first
    assert (rotated.out + rotated.err).count(second) == 1  # printed once, on stdout
    assert f"new token for Dr. Oleg Ivanov ({user['id']})" in rotated.err
    assert "the old one no longer works" in rotated.err
    old = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {first}"})
    assert old.status_code == 401
    new = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {second}"})
    assert new.status_code == 200 and new.json()["id"] == user["id"]

    shown = await grantflow(stack, tmp_path, "users", "token", "show", user["id"])
    assert shown.code == 0, shown.err
    status = json.loads(shown.out)
    assert status["user_id"] == user["id"] and status["revoked_at"] is None
    assert status["last_used_at"] is not None  # the request just made
    assert second not in shown.out

    revoked = await grantflow(stack, tmp_path, "users", "token", "revoke", user["id"])
    assert revoked.code == 0, revoked.err
    assert json.loads(revoked.out)["revoked_at"] is not None
    refused = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {second}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]

    # The refusals change nothing, so they run side by side (each command is a process).
    nobody = str(uuid.uuid4())
    *unknowns, bad = await asyncio.gather(
        *(
            grantflow(stack, tmp_path, "users", "token", *args)
            for args in (["revoke", nobody], ["rotate", nobody], ["show", nobody])
        ),
        grantflow(
            stack, tmp_path, "users", "token", "rotate", user["id"], "--expires-in-days", "0"
        ),
    )
    for unknown in unknowns:
        assert unknown.code == 2 and "user not found" in unknown.err, unknown.err
        assert unknown.out == ""
    assert bad.code == 2 and "--expires-in-days" in bad.err


@pytest.mark.slow
async def test_bad_input_exits_non_zero_and_creates_no_user(stack: Stack, tmp_path: Path) -> None:
    before = await stack.pool.fetchval("SELECT count(*) FROM users")
    # Five operators' mistakes, side by side (each command is a process of its own).
    wizard, no_name, no_role, bad_type, reviewer = await asyncio.gather(
        grantflow(stack, tmp_path, "users", "create", "--role", "wizard", "--name", "X"),
        grantflow(stack, tmp_path, "users", "create", "--role", "admin"),
        grantflow(stack, tmp_path, "users", "create", "--name", "Nobody"),
        grantflow(
            stack,
            tmp_path,
            *("users", "create", "--role", "applicant", "--name", "Y"),
            *("--institution", "Z", "--organisation-type", "castle"),
        ),
        grantflow(
            stack,
            tmp_path,
            *("users", "create", "--role", "reviewer", "--name", "No Specialty"),
            *("--institution", "Clinic 1"),
        ),
    )
    assert wizard.code == 2
    assert "Invalid value for '--role'" in wizard.err and "'wizard' is not one of" in wizard.err
    assert "reviewer" in wizard.err  # the message names the roles there are
    assert no_name.code == 2 and "Missing option '--name'" in no_name.err
    assert no_role.code == 2 and "Missing option '--role'" in no_role.err
    assert bad_type.code == 2 and "'castle' is not one of" in bad_type.err
    assert reviewer.code == 2 and "specialty" in reviewer.err
    for run in (wizard, no_name, no_role, bad_type, reviewer):
        assert "gf_" not in run.out and "Traceback" not in run.err + run.out
    assert await stack.pool.fetchval("SELECT count(*) FROM users") == before


@pytest.mark.slow
async def test_without_a_stack_or_servers_it_says_how_to_get_one(
    stack: Stack, tmp_path: Path
) -> None:
    """No DATABASE_URL, no TEMPORAL_ADDRESS and no `grantflow dev` under GRANTFLOW_HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS") and not k.startswith("GRANTFLOW_")
    }
    env.update(GRANTFLOW_HOME=str(tmp_path / "nothing-here"), COLUMNS="200")
    before = await stack.pool.fetchval("SELECT count(*) FROM users")
    runs = await asyncio.gather(
        _run(env, tmp_path, "migrate"),
        _run(env, tmp_path, "users", "create", "--role", "admin", "--name", "Nobody"),
    )
    for run in runs:
        assert run.code == 2, run.out + run.err
        said = " ".join((run.out + run.err).split())
        assert f"no running grantflow stack under {tmp_path / 'nothing-here'}" in said
        assert "TEMPORAL_ADDRESS, DATABASE_URL not set" in said
        assert "make run" in said and "Traceback" not in said
    assert await stack.pool.fetchval("SELECT count(*) FROM users") == before
