"""What the tests and the benchmarks (bench/) both need to drive grantflow: a fresh migrated
database, the Temporal dev server with grantflow's search attributes, users with tokens, the
bodies of an open programme and an eligible application, a poll until something holds, a
`grantflow` command in a process of its own (the fault tests' and the chaos soak's worker), and
the business keys on record twice (none may be, whatever the faults).

Plain functions without pytest, so that bench/ imports them as they are."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from grantflow.dev.embedded import TEMPORAL_SERVER_ARGS, find_binary
from grantflow.store.migrations import migrate
from grantflow.store.users import create_user
from schemas.common import OrganisationType, Role
from schemas.users import UserCreate
from workflows.application import PROGRAMME, STAGE


async def fresh_database(server_url: str, name: str) -> str:
    """A new, migrated database on the server at `server_url`; returns its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def start_temporal() -> WorkflowEnvironment:
    """The Temporal dev server (the `temporal` CLI beside the venv) on a free port, with the
    search attributes the workflows set."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=[STAGE, PROGRAMME],
        dev_server_log_level="error",
        dev_server_extra_args=list(TEMPORAL_SERVER_ARGS),  # as `grantflow dev` runs it
    )


@dataclass
class User:
    id: str
    name: str
    role: Role
    institution_id: str | None
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(
    pool: asyncpg.Pool,
    role: Role,
    *,
    institution: str | None = None,
    organisation_type: OrganisationType | None = None,
    specialty: str | None = None,
    name: str | None = None,
) -> User:
    """A user made straight in the database, with a token. Applicants, reviewers and clinic
    coordinators belong to an institution: a new one unless `institution` names it."""
    if institution is None and role in (Role.applicant, Role.reviewer, Role.coordinator):
        institution = f"Clinic {uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        made = await create_user(
            conn,
            UserCreate(
                name=name or f"{role.value} {uuid.uuid4().hex[:6]}",
                role=role,
                institution=institution,
                specialty=specialty,
                organisation_type=organisation_type
                or (OrganisationType.medical_institution if institution else None),
            ),
        )
    return User(made.user.id, made.user.name, made.user.role, made.user.institution_id, made.token)


def programme_body(**overrides: Any) -> dict[str, Any]:
    """An open programme with second-scale durations, as the simulator uses."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "name": f"Programme {uuid.uuid4().hex[:6]}",
        "budget_rub": 2_540_000_000,
        "max_grant_rub": 200_000_000,
        "organisation_types": ["medical_institution", "company"],
        "specialties": ["cardiology", "radiology", "oncology"],
        "intake_opens": (now - timedelta(minutes=1)).isoformat(),
        "intake_closes": (now + timedelta(hours=1)).isoformat(),
        "params": {"revision_window": 3600},
    }
    body.update(overrides)
    return body


def application_body(programme_id: str, **overrides: Any) -> dict[str, Any]:
    """An eligible application: budget lines add up, within every limit."""
    body: dict[str, Any] = {
        "programme_id": programme_id,
        "title": "AI triage of chest X-rays",
        "summary": "Flags urgent findings for the radiologist.",
        "specialty": "radiology",
        "requested_rub": 30_000_000,
        "total_investment_rub": 250_000_000,
        "complex_project": False,
        "duration_months": 24,
        "budget_lines": [
            {
                "item": "Model training",
                "category": "direct_costs",
                "year": 1,
                "amount_rub": 18_000_000,
            },
            {
                "item": "Integration",
                "category": "direct_costs",
                "year": 2,
                "amount_rub": 12_000_000,
            },
        ],
        "partner_institutions": [],
        "expected_results": "Urgent findings reported 30 % sooner.",
    }
    body.update(overrides)
    return body


# How many times longer than usual to wait: a worker that caches no workflow stalls 10 s on
# some tasks by the SDK's design (tests/test_uncached.py sets it for its own tests only).
PATIENCE: contextvars.ContextVar[float] = contextvars.ContextVar("patience", default=1.0)


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 15, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value otherwise."""
    within *= PATIENCE.get()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {within}s; last value: {last!r}")


GRANTFLOW = Path(sys.executable).parent / "grantflow"


class GrantflowProcess:
    """`grantflow <command>` in a process of its own, as production runs it, with `env` for its
    environment and its output appended to `log` (it runs in the log's folder)."""

    def __init__(self, command: str, env: Mapping[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, dict(env), log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> None:
        """Start it, with `env` added to its environment for this start only."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(GRANTFLOW), self.command],
                env={**self.env, **env},
                cwd=self.log.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def identity(self) -> str:
        """The identity the SDK gives a worker by default, which its history events carry."""
        assert self.process is not None
        return f"{self.process.pid}@{socket.gethostname()}"

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything or to tell the server."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def output(self) -> str:
        """The end of what it printed, for a failure's message."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


# Each business key at most once, whatever the retries: a row per key in each table.
DUPLICATES_SQL = {
    "reviews": "SELECT application_id, reviewer_id FROM reviews GROUP BY 1, 2 HAVING count(*) > 1",
    "votes": """SELECT session_id, application_id, member_id FROM votes
                GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    "ledger entries": """SELECT application_id, kind, reason FROM ledger_entries
                         GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    "notifications": """SELECT user_id, kind, subject, task_id FROM notifications
                        GROUP BY 1, 2, 3, 4 HAVING count(*) > 1""",
    "audit events": """SELECT workflow_id, kind, at, actor_id, application_id FROM audit_events
                       GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1""",
}


async def duplicates(pool: asyncpg.Pool) -> dict[str, list[Any]]:
    """The business keys on record more than once, by table: none, whatever the retries."""
    found = {}
    for table, sql in DUPLICATES_SQL.items():
        rows = await pool.fetch(sql)
        if rows:
            found[table] = [tuple(r) for r in rows]
    return found
