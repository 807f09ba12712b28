"""What the lifecycle, latency and memory benchmarks share: the embedded servers started as the
tests start them (PostgreSQL from the wheel, the Temporal dev server found beside the venv or on
PATH), a fresh migrated database, grantflow's worker and its API driven in-process through
httpx, and a count of the PostgreSQL round trips each activity and each API step makes."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import statistics
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres, find_binary, free_port
from grantflow.logging import configure_logging
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.store.migrations import migrate
from grantflow.store.users import create_user
from schemas.common import OrganisationType, Role
from schemas.users import UserCreate
from workers.main import build_worker
from workflows.application import PROGRAMME, STAGE

# Which step of the benchmark's driver is talking to PostgreSQL through the API; activities are
# told apart by their own activity type.
STEP: contextvars.ContextVar[str] = contextvars.ContextVar("bench_step", default="other")
METHOD: contextvars.ContextVar[str] = contextvars.ContextVar("bench_method", default="")


async def _mark_method(request: httpx.Request) -> None:
    # Runs in the caller's task, which the ASGI transport also runs the app in.
    METHOD.set(request.method)


@dataclass
class RoundTrips:
    """Every statement a pool's connections send (asyncpg's query logger sees each one,
    BEGIN and COMMIT included), by activity type or by the driver's step."""

    by_source: Counter[str] = field(default_factory=Counter)
    by_query: Counter[tuple[str, str]] = field(default_factory=Counter)

    def log(self, record: Any) -> None:
        # The logger runs via call_soon, which copies the context of the statement's task:
        # inside an activity, activity.info() still answers.
        try:
            source = "activity:" + activity.info().activity_type
        except RuntimeError:
            source = f"api:{STEP.get()} {METHOD.get()}"
        self.by_source[source] += 1
        self.by_query[source, " ".join(record.query.split())[:70]] += 1

    async def init(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(self.log)

    def reset(self) -> None:
        self.by_source.clear()
        self.by_query.clear()

    def print_queries(self, per: int) -> None:
        """Every statement by source, per lifecycle or per call (`per` of them)."""
        for (source, query), count in sorted(self.by_query.items()):
            print(f"    {count / per:6.1f}  {source:30} {query}")


async def counted_pool(url: str, counter: RoundTrips, max_size: int) -> asyncpg.Pool:
    """grantflow's own pool, with every statement counted."""
    return await create_pool(url, min_size=2, max_size=max_size, init=counter.init)


@dataclass
class Servers:
    postgres: EmbeddedPostgres
    env: WorkflowEnvironment
    database_url: str

    @property
    def client(self) -> Client:
        return self.env.client


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[Servers]:
    """PostgreSQL and the Temporal dev server on free ports, torn down on exit."""
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory(prefix="grantflow-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg" / "data", free_port(), durable=False)
        postgres.start()
        try:
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=find_binary("temporal"),
                data_converter=pydantic_data_converter,
                search_attributes=[STAGE, PROGRAMME],
                dev_server_log_level="error",
            )
            try:
                url = await fresh_database(postgres.url, "grantflow_bench")
                yield Servers(postgres, env, url)
            finally:
                await env.shutdown()
        finally:
            postgres.stop()


async def fresh_database(server_url: str, name: str) -> str:
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


@dataclass
class Grantflow:
    """grantflow's worker and API on the bench's servers; `api` is an in-process client."""

    servers: Servers
    settings: Settings
    api: httpx.AsyncClient
    pool: asyncpg.Pool
    round_trips: RoundTrips


@contextlib.asynccontextmanager
async def grantflow(
    srv: Servers, *, worker: bool = True, max_cached_workflows: int = 1000
) -> AsyncIterator[Grantflow]:
    settings = Settings(
        task_queue=f"bench-{uuid.uuid4()}",
        database_url=srv.database_url,
        temporal_address="unused-in-process",
    )
    counter = RoundTrips()
    pool = await counted_pool(srv.database_url, counter, 20)
    worker_pool = await counted_pool(srv.database_url, counter, 10)
    app = create_app(settings, Resources(settings, pool, srv.client))
    try:
        async with contextlib.AsyncExitStack() as stack:
            if worker:
                await stack.enter_async_context(
                    build_worker(
                        srv.client,
                        worker_pool,
                        settings.task_queue,
                        max_cached_workflows=max_cached_workflows,
                    )
                )
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://grantflow.bench",
                    timeout=60,
                    event_hooks={"request": [_mark_method]},
                )
            )
            yield Grantflow(srv, settings, api, pool, counter)
    finally:
        await pool.close()
        await worker_pool.close()


@dataclass
class User:
    id: str
    institution_id: str | None
    headers: dict[str, str]


async def make_user(
    pool: asyncpg.Pool, role: Role, *, specialty: str | None = None, institution: str | None = None
) -> User:
    if institution is None and role in (Role.applicant, Role.reviewer, Role.coordinator):
        institution = f"Clinic {uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        made = await create_user(
            conn,
            UserCreate(
                name=f"{role.value} {uuid.uuid4().hex[:6]}",
                role=role,
                institution=institution,
                specialty=specialty,
                organisation_type=OrganisationType.medical_institution if institution else None,
            ),
        )
    return User(made.user.id, made.user.institution_id, {"Authorization": f"Bearer {made.token}"})


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 120, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise RuntimeError(f"not reached within {within}s; last value: {last!r}")


def ok(response: httpx.Response, *codes: int) -> Any:
    if response.status_code not in (codes or (200, 201)):
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def create_programme(
    gf: Grantflow,
    admin: User,
    specialty: str,
    params: dict[str, Any],
    *,
    name: str,
    budget_rub: int = 2_540_000_000,
    organisation_types: tuple[str, ...] = ("medical_institution",),
    intake_opens: str = "2020-01-01T00:00:00Z",
    intake_closes: str = "2100-01-01T00:00:00Z",
) -> dict[str, Any]:
    """A programme for one specialty, created through the API as an admin would."""
    created: dict[str, Any] = ok(
        await gf.api.post(
            "/v1/programmes",
            json={
                "name": name,
                "budget_rub": budget_rub,
                "max_grant_rub": 200_000_000,
                "organisation_types": list(organisation_types),
                "specialties": [specialty],
                "intake_opens": intake_opens,
                "intake_closes": intake_closes,
                "params": params,
            },
            headers=admin.headers,
        )
    )
    return created


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) by the inclusive method; samples in any order."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]
