"""One embedded PostgreSQL and one Temporal dev server per test session, on free ports (so the
suite also runs beside a `make run`), one worker on a task queue of its own, and the API
driven in-process through httpx as a client would."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.embedded import TEMPORAL_SERVER_ARGS, EmbeddedPostgres, find_binary, free_port
from grantflow.notify import Recipient
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.store.migrations import migrate
from grantflow.store.users import create_user
from schemas.common import OrganisationType, Role
from schemas.notifications import NotificationPublic
from schemas.users import UserCreate
from workers.main import WORKFLOWS, build_worker
from workers.sandbox import sandbox_runner
from workflows.application import PROGRAMME, STAGE

SESSION = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Stack:
    settings: Settings
    client: Client
    pool: asyncpg.Pool
    api: httpx.AsyncClient
    database_url: str
    server_url: str
    sender: RecordingSender


class RecordingSender:
    """The worker's notification sender in tests: keeps what it sent, to count deliveries."""

    def __init__(self) -> None:
        self.sent: list[NotificationPublic] = []

    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        self.sent.append(notification)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=[STAGE, PROGRAMME],
        dev_server_log_level="error",
        dev_server_extra_args=list(TEMPORAL_SERVER_ARGS),
    )
    yield env
    await env.shutdown()


async def fresh_database(server_url: str, name: str) -> str:
    """A new, migrated database on the session's server; returns its URL."""
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


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(
    postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    database_url = await fresh_database(postgres.url, "grantflow_test")
    settings = Settings(
        task_queue=f"tq-{uuid.uuid4()}",
        database_url=database_url,
        temporal_address="unused-in-process",
    )
    pool = await create_pool(database_url, min_size=2, max_size=20)
    worker_pool = await create_pool(database_url, min_size=2, max_size=10)
    client = temporal_env.client
    sender = RecordingSender()
    worker = build_worker(client, worker_pool, settings.task_queue, sender=sender)
    app = create_app(settings, Resources(settings, pool, client))
    async with (
        worker,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://grantflow.test"
        ) as api,
    ):
        yield Stack(settings, client, pool, api, database_url, postgres.url, sender)
        if os.environ.get("GRANTFLOW_RECORD_HISTORIES"):
            await record_histories(client, settings.task_queue)
    await pool.close()
    await worker_pool.close()
    await replay_everything(client)


async def replay_everything(client: Client) -> None:
    """Replay the history of every workflow the suite ran on the session's server (every task
    queue: the fault tests' too) on today's code, at the end of the session. A workflow whose
    commands depend on anything but its history (the clock, randomness, a dict's order, a
    change that was not guarded by `workflow.patched` between a worker's restarts) fails the
    session here, with the workflows named."""
    executions = [(e.id, e.run_id) async for e in client.list_workflows()]
    assert executions, "the server lists no workflow: nothing would be replayed"
    fetching = asyncio.Semaphore(16)  # a few hundred histories: fetched side by side

    async def fetch(workflow_id: str, run_id: str | None) -> WorkflowHistory:
        async with fetching:
            return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()

    fetched = await asyncio.gather(*(fetch(*e) for e in executions))

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for history in fetched:
            yield history

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(WORKFLOWS),  # the worker's sandbox
    )
    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    failures = [f"{run}: {error}" for run, error in results.replay_failures.items()]
    assert not failures, "histories of this session that no longer replay:\n" + "\n".join(failures)


HISTORIES = Path(__file__).parent / "histories"
IN_FLIGHT = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
}


def _shape(history: WorkflowHistory) -> str:
    """What a history does, without its ids and times: one file per distinct path."""
    steps = []
    for event in history.events:
        attrs = event.WhichOneof("attributes") or ""
        name = ""
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("workflow_execution_update_accepted_event_attributes"):
            accepted = event.workflow_execution_update_accepted_event_attributes
            name = accepted.accepted_request.input.name
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            name = event.workflow_execution_signaled_event_attributes.signal_name
        steps.append(f"{attrs}:{name}")
    return hashlib.sha256("\n".join(steps).encode()).hexdigest()[:10]


async def record_histories(client: Client, task_queue: str) -> None:
    """Save one history per distinct path the suite took through each workflow (`make
    histories`), for tests/test_replay.py. Files are named by path, so re-recording the same
    paths rewrites the same files and old paths stay: new code must still replay them."""
    HISTORIES.mkdir(exist_ok=True)
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}'"):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        if history.events[-1].event_type in IN_FLIGHT:
            continue  # caught mid-task: its next run of the suite will do
        status = (execution.status or WorkflowExecutionStatus.RUNNING).name.lower()
        name = f"{execution.workflow_type}-{status}-{_shape(history)}"
        (HISTORIES / f"{name}.json").write_text(history.to_json())


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


UserFactory = Callable[..., Awaitable[User]]


def user_factory(stack: Stack) -> UserFactory:
    """Users made straight in `stack`'s database (the `make_user` fixture, and stacks of a
    test's own), each with a token."""

    async def make(
        role: Role,
        *,
        institution: str | None = None,
        organisation_type: OrganisationType | None = None,
        specialty: str | None = None,
        name: str | None = None,
    ) -> User:
        if institution is None and role in (Role.applicant, Role.reviewer, Role.coordinator):
            institution = f"Clinic {uuid.uuid4().hex[:8]}"
        async with stack.pool.acquire() as conn:
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
        return User(
            made.user.id, made.user.name, made.user.role, made.user.institution_id, made.token
        )

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def make_user(stack: Stack) -> UserFactory:
    return user_factory(stack)


@pytest_asyncio.fixture(loop_scope="session")
async def admin(make_user: UserFactory) -> User:
    return await make_user(Role.admin)


@pytest_asyncio.fixture(loop_scope="session")
async def applicant(make_user: UserFactory) -> User:
    return await make_user(Role.applicant)


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


async def create_programme(stack: Stack, admin: User, **overrides: Any) -> dict[str, Any]:
    response = await stack.api.post(
        "/v1/programmes", json=programme_body(**overrides), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# How many times longer than usual a test waits: a worker that caches no workflow stalls 10 s on
# some tasks by the SDK's design (tests/test_uncached.py sets it for its own tests only).
PATIENCE: contextvars.ContextVar[float] = contextvars.ContextVar("patience", default=1.0)


TABLES_SQL = """
SELECT quote_ident(table_name::text) FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"""


async def table_digests(pool: asyncpg.Pool) -> dict[str, str]:
    """Every table's rows, hashed: equal digests mean no row was added, changed or deleted."""
    async with pool.acquire() as conn:
        digests = {}
        for (table,) in await conn.fetch(TABLES_SQL):
            # An identifier from the catalog, quoted by quote_ident: no value enters the SQL.
            rows = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            query = f"SELECT {rows} FROM {table} t"  # noqa: S608
            digests[table] = await conn.fetchval(query)
        return digests


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 15, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value otherwise."""
    within *= PATIENCE.get()
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {within}s; last value: {last!r}")


HISTORIES = Path(__file__).parent / "histories"
IN_FLIGHT = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
}
