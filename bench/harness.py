"""What the lifecycle, latency, burst and memory benchmarks share: the embedded servers started
as the tests start them (PostgreSQL from the wheel, the Temporal dev server found beside the venv
or on PATH), a fresh migrated database, and grantflow's worker and API either as processes of
their own (`grantflow worker`, `grantflow api`: production's shape, the driver alone in the
bench's process) or in-process, driven through httpx, with a count of the PostgreSQL round trips
each activity and each API step makes."""

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
from temporalio.testing import WorkflowEnvironment

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.children import GrantflowChild, child_environment
from grantflow.dev.embedded import EmbeddedPostgres, free_port
from grantflow.logging import configure_logging
from grantflow.services.context import Resources
from grantflow.settings import Settings
from tests import support
from tests.support import User as User
from tests.support import fresh_database, programme_body, start_temporal
from tests.support import make_user as make_user
from workers.main import build_worker

# Which step of the benchmark's driver is talking to PostgreSQL through the API; activities are
# told apart by their own activity type.
STEP: contextvars.ContextVar[str] = contextvars.ContextVar("bench_step", default="other")
METHOD: contextvars.ContextVar[str] = contextvars.ContextVar("bench_method", default="")
# A connection idle this long is dropped by the driver, before uvicorn drops it (5 s): a
# request sent on one the server is closing at that moment fails with httpx.ReadError (seen
# in bench.lifecycle, a report sent after the 4 s wait for the second tranche).
IDLE_EXPIRY = 2.0


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
            env = await start_temporal()
            try:
                url = await fresh_database(postgres.url, "grantflow_bench")
                yield Servers(postgres, env, url)
            finally:
                await env.shutdown()
        finally:
            postgres.stop()


@dataclass
class Grantflow:
    """grantflow's worker and API on the bench's servers; `api` is an in-process client."""

    servers: Servers
    settings: Settings
    api: httpx.AsyncClient
    pool: asyncpg.Pool
    round_trips: RoundTrips  # stays empty when they run in processes of their own


@contextlib.asynccontextmanager
async def grantflow(
    srv: Servers,
    *,
    worker: bool = True,
    max_cached_workflows: int = 1000,
    client: Client | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Grantflow]:
    """`client` (the servers' own by default) and `settings` (the defaults, on the bench's
    servers) are for the observability bench: a traced client, metrics on or off."""
    settings = (settings or Settings()).model_copy(
        update={
            "task_queue": f"bench-{uuid.uuid4()}",
            "database_url": srv.database_url,
            "temporal_address": "unused-in-process",
        }
    )
    client = client or srv.client
    counter = RoundTrips()
    pool = await counted_pool(srv.database_url, counter, 20)
    worker_pool = await counted_pool(srv.database_url, counter, 10)
    app = create_app(settings, Resources(settings, pool, client))
    try:
        async with contextlib.AsyncExitStack() as stack:
            if worker:
                await stack.enter_async_context(
                    build_worker(
                        client,
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


@contextlib.asynccontextmanager
async def grantflow_processes(
    srv: Servers, *, limits: httpx.Limits | None = None, task_queue: str | None = None
) -> AsyncIterator[Grantflow]:
    """`grantflow worker` and `grantflow api` on the bench's servers, each in a process of its
    own (their logs in a temporary folder, shown if they fail to start); `api` is an HTTP
    client to that API, `pool` the driver's own. No round trips are counted: they happen in
    the children."""
    with tempfile.TemporaryDirectory(prefix="grantflow-bench-") as folder:
        settings = Settings(
            home=Path(folder),
            database_url=srv.database_url,
            temporal_address=srv.client.service_client.config.target_host,
            api_port=free_port(),
            task_queue=task_queue or f"bench-{uuid.uuid4()}",
        )
        env = child_environment(settings) | {
            "GRANTFLOW_TASK_QUEUE": settings.task_queue,
            "GRANTFLOW_LOG_LEVEL": "warning",
        }
        children = [
            GrantflowChild([command], env, Path(folder) / f"{command}.log")
            for command in ("worker", "api")
        ]
        pool = await create_pool(srv.database_url, min_size=1, max_size=4)
        try:
            for child in children:
                child.start(cwd=Path(folder))
            async with httpx.AsyncClient(
                base_url=f"http://{settings.api_host}:{settings.api_port}",
                timeout=120,
                # The driver bounds the connections.
                limits=limits or httpx.Limits(max_connections=None, keepalive_expiry=IDLE_EXPIRY),
            ) as api:
                await _until_up(api, children, srv.client, settings.task_queue)
                yield Grantflow(srv, settings, api, pool, RoundTrips())
        finally:
            for child in reversed(children):
                child.stop()
            await pool.close()


async def _until_up(
    api: httpx.AsyncClient, children: list[GrantflowChild], client: Client, task_queue: str
) -> None:
    """The API answers and the worker polls, within a minute; a child that ends fails the bench
    with its last line."""
    worker = children[0]
    for _ in range(600):
        for child in children:
            if ended := child.exited():
                raise RuntimeError(ended)
        with contextlib.suppress(httpx.TransportError):
            if (await api.get("/readyz")).status_code == 200 and await worker.polling(
                client, task_queue
            ):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"grantflow not up in 60 s: {[c.log_tail(5) for c in children]}")


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 120, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy: a bench under load waits longer."""
    return await support.eventually(check, within=within, interval=interval)


def ok(response: httpx.Response, *codes: int) -> Any:
    if response.status_code not in (codes or (200, 201)):
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def create_programme(
    gf: Grantflow, admin: User, specialty: str, params: dict[str, Any], **body: Any
) -> dict[str, Any]:
    """A programme for one specialty, open since 2020 unless `body` says otherwise, created
    through the API as an admin would."""
    open_for_long = {
        "organisation_types": ["medical_institution"],
        "intake_opens": "2020-01-01T00:00:00Z",
        "intake_closes": "2100-01-01T00:00:00Z",
    }
    created: dict[str, Any] = ok(
        await gf.api.post(
            "/v1/programmes",
            json=programme_body(specialties=[specialty], params=params, **(open_for_long | body)),
            headers=admin.headers,
        )
    )
    return created


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) by the inclusive method; samples in any order."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]
