"""One embedded PostgreSQL and one Temporal dev server per test session, on free ports (so the
suite also runs beside a `make run`), one worker on a task queue of its own, and the API
driven in-process through httpx as a client would. They start only for the tests that ask for
them: the unit tier needs neither, the workflow tier (tests/workflows/) has the time-skipping
server instead.

Every test is in a tier (pyproject.toml's markers): `make test-fast` runs all but `slow`."""

from __future__ import annotations

import ast
import asyncio
import functools
import gc
import hashlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
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
from grantflow.dev.embedded import EmbeddedPostgres, free_port
from grantflow.notify import Recipient
from grantflow.services.context import Resources
from grantflow.settings import Settings
from schemas.common import Role
from schemas.notifications import NotificationPublic
from tests import support

# What the test modules import from here, shared with bench/ (tests/support.py).
from tests.support import PATIENCE as PATIENCE
from tests.support import User as User
from tests.support import application_body as application_body
from tests.support import eventually as eventually
from tests.support import fresh_database as fresh_database
from tests.support import programme_body as programme_body
from workers.main import WORKFLOWS, build_worker
from workers.sandbox import sandbox_runner

TIERS = ("unit", "workflow", "system", "slow")


def _ast_parse_without_gc() -> None:
    """CPython 3.11 keeps the AST constructor's recursion counter in one place per interpreter
    (gh-106905; 3.12 counts per call), and its traceback module calls `ast.parse` to place its
    carets. A garbage collection in the middle of an `ast.parse` runs finalizers, such as
    asyncio's "Future exception was never retrieved", which logs a traceback: a second
    `ast.parse` inside the first. The first then fails with "SystemError: AST constructor
    recursion depth mismatch", and when it was pytest reporting a failure, the report becomes
    an INTERNALERROR that ends the whole run (CI at 4c703ca, in test_fault_servers). No
    collection during `ast.parse`, so no finalizer runs inside it (nor another thread: only
    Python code switches threads)."""
    if sys.version_info >= (3, 12):
        return
    parse = ast.parse

    @functools.wraps(parse)
    def without_gc(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return parse(*args, **kwargs)
        gc.disable()
        try:
            return parse(*args, **kwargs)
        finally:
            gc.enable()

    ast.parse = without_gc


_ast_parse_without_gc()
SESSION = pytest.mark.asyncio(loop_scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test has a tier (pyproject.toml's markers), so that `make test-fast` knows
    whether to run it: a module says its own with `pytestmark`. The longest modules run first
    (see `_expected_seconds`), so that the processes of `make test` end together."""
    untiered = [
        item.nodeid for item in items if not any(m.name in TIERS for m in item.iter_markers())
    ]
    if untiered:
        raise pytest.UsageError(
            f"tests without a tier ({', '.join(TIERS)}): mark their module with pytestmark:\n"
            + "\n".join(untiered)
        )
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    longest_first = sorted(modules.values(), key=_expected_seconds, reverse=True)  # stable
    items[:] = [item for module in longest_first for item in module]


# What `make test` spends on each of the longest modules, in seconds: their tests over 4 s in
# the durations of a CI run (`pytest -n 2 --durations=40`, 2-core machine, load 5 to 7), summed
# per module, and test_backup and test_whole_life as timed alone. Refresh it when a module's
# cost moves by tens of seconds: a long module handed out last runs on alone while the other
# process idles.
MODULE_SECONDS: dict[str, float] = {
    "tests/test_backup.py": 100,  # two `grantflow dev` stacks, one restored from the other
    "tests/pages/test_whole_life.py": 95,
    "tests/test_simulate.py": 75,
    "tests/test_fault_servers.py": 65,
    "tests/test_fault_worker.py": 60,
    "tests/test_uncached.py": 55,
    "tests/test_dev.py": 45,
    "tests/test_replay.py": 45,
    "tests/test_review.py": 40,
    "tests/test_inboxes.py": 35,
    "tests/pages/test_applicant.py": 27,
    "tests/test_cli.py": 25,
    "tests/test_openapi_fuzz.py": 23,
    "tests/test_check.py": 20,
    "tests/test_hostile_input.py": 18,
    "tests/pages/test_reviewer.py": 18,
    "tests/test_pilot.py": 16,
    "tests/test_fault_commit.py": 14,
    "tests/pages/test_page_authorization.py": 10,
}
# A module not named there counts its tests: one that declares a timeout of its own (a walk
# through the pages, a lifecycle) about 10 s, any other a tenth of a second. (A timeout is
# no measure itself: the walks declare 300 s and take 10.)
LONG_TEST_SECONDS = 10.0
TEST_SECONDS = 0.1


def _expected_seconds(module: list[pytest.Item]) -> float:
    """How long a module takes: measured (MODULE_SECONDS), or as its tests say. pytest-xdist
    hands out whole modules (`--dist loadfile`) in this order, and a long one handed out last
    would run on alone."""
    path = module[0].nodeid.split("::", 1)[0]
    if path in MODULE_SECONDS:
        return MODULE_SECONDS[path]
    return sum(
        LONG_TEST_SECONDS if item.get_closest_marker("timeout") else TEST_SECONDS for item in module
    )


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
def postgres() -> Any:
    # Not under pytest's basetemp: every pytest session resets /tmp/pytest-of-<user> to 0700,
    # and as root the server runs as a system user of its own, which then could not reach its
    # data while another session (a second terminal, `make test-fast`) starts beside this one.
    home = Path(tempfile.mkdtemp(prefix="grantflow-test-pg-"))
    server = EmbeddedPostgres(home / "data", free_port(), durable=False)
    try:
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await support.start_temporal()
    yield env
    await env.shutdown()


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
        if recording():
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
    if not executions:
        return  # its tests started none: a module run alone, or all one process of `-n 2` got
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


def recording() -> bool:
    """`make histories`: the stacks save their workflows' histories as they shut down."""
    return bool(os.environ.get("GRANTFLOW_RECORD_HISTORIES"))


def save_history(
    workflow_type: str, status: WorkflowExecutionStatus | None, history: WorkflowHistory
) -> None:
    """Save one run's history under its path's name (tests/test_replay.py replays it). Files
    are named by path, so saving the same path again rewrites the same file and old paths
    stay: new code must still replay them."""
    if history.events[-1].event_type in IN_FLIGHT:
        return  # caught mid-task: its next run of the suite will do
    state = (status or WorkflowExecutionStatus.RUNNING).name.lower()
    HISTORIES.mkdir(exist_ok=True)
    name = f"{workflow_type}-{state}-{_shape(history)}"
    (HISTORIES / f"{name}.json").write_text(history.to_json())


async def record_histories(client: Client, task_queue: str) -> None:
    """Save one history per distinct path the workflows of `task_queue` took, every run of
    each (a run that continued as new is a path of its own)."""
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        save_history(execution.workflow_type, execution.status, await handle.fetch_history())


async def record_runs(client: Client, workflow_id: str) -> None:
    """Save every run of one workflow, newest first, following its continue-as-new chain
    back: for a server without a visibility API to list them (the time-skipping one)."""
    run_id: str | None = (await client.get_workflow_handle(workflow_id).describe()).run_id
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        described = await handle.describe()
        history = await handle.fetch_history()
        save_history(described.workflow_type, described.status, history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None


UserFactory = Callable[..., Awaitable[User]]


def user_factory(stack: Stack) -> UserFactory:
    """Users made straight in `stack`'s database (the `make_user` fixture, and stacks of a
    test's own), each with a token."""
    return functools.partial(support.make_user, stack.pool)


@pytest_asyncio.fixture(loop_scope="session")
async def make_user(stack: Stack) -> UserFactory:
    return user_factory(stack)


@pytest_asyncio.fixture(loop_scope="session")
async def admin(make_user: UserFactory) -> User:
    return await make_user(Role.admin)


@pytest_asyncio.fixture(loop_scope="session")
async def applicant(make_user: UserFactory) -> User:
    return await make_user(Role.applicant)


async def create_programme(stack: Stack, admin: User, **overrides: Any) -> dict[str, Any]:
    response = await stack.api.post(
        "/v1/programmes", json=programme_body(**overrides), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


TABLES_SQL = """
SELECT quote_ident(table_name::text) FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"""


async def table_digests(pool: asyncpg.Pool) -> dict[str, str]:
    """Every table's rows, hashed: equal digests mean no row was added, changed or deleted.
    A token's last use is bookkeeping, not a change: a refused request still used its token."""
    async with pool.acquire() as conn:
        digests = {}
        for (table,) in await conn.fetch(TABLES_SQL):
            # An identifier from the catalog, quoted by quote_ident: no value enters the SQL.
            row = "(to_jsonb(t) - 'token_last_used_at')::text"
            rows = f"md5(coalesce(string_agg({row}, '|' ORDER BY {row}), ''))"
            query = f"SELECT {rows} FROM {table} t"  # noqa: S608
            digests[table] = await conn.fetchval(query)
        return digests
