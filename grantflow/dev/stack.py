"""Running grantflow: the embedded servers, the worker and the API, stopped cleanly in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import asyncpg
import httpx
import structlog
import uvicorn
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev import startup
from grantflow.dev.children import GrantflowChild, child_environment, echoing
from grantflow.dev.demo import DemoUser, create_demo_users
from grantflow.dev.embedded import EmbeddedPostgres, EmbeddedTemporal, ManagedProcess, port_open
from grantflow.notify import sender_from_settings
from grantflow.observability import process as observability
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.store.migrations import migrate
from grantflow.temporal import connect, ensure_search_attributes
from workers.main import build_worker, warn_unless_drains

log = structlog.get_logger(__name__)
DATABASE = "grantflow"
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop:
    """What SIGINT, SIGTERM and SIGHUP (a closed terminal) do to a grantflow process, from its
    start to its exit. The first asks for an orderly stop: while serving, `serve` returns;
    before that (starting the servers, migrating) a KeyboardInterrupt unwinds to the stop in
    `finally`. Another one, or one while it is already stopping, forces it: `force` (which
    kills the servers), then the process exits at once with 128 + the signal."""

    def __init__(self, force: Callable[[], None] = lambda: None) -> None:
        self.force = force
        self.requested = False
        self.stopping = False
        self._wake: Callable[[], None] | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def serving(self, wake: Callable[[], None]) -> Iterator[None]:
        """While the block runs, the first signal calls `wake` instead of interrupting."""
        self._wake = wake
        try:
            yield
        finally:
            self._wake = None

    def _handle(self, signum: int, _: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested or self.stopping:
            log.warning("forced stop", signal=name)
            self.force()
            sys.stderr.flush()
            os._exit(128 + signum)
        self.requested = True
        log.info("stop requested", signal=name)
        if self._wake is not None:
            self._wake()
            return
        raise KeyboardInterrupt


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: grantflow owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class EmbeddedStack:
    """The embedded servers `grantflow dev` starts under GRANTFLOW_HOME."""

    settings: Settings
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(self) -> Settings:
        s, home = self.settings, self.settings.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
        updates: dict[str, str] = {}
        try:
            if not s.database_url:
                pg = EmbeddedPostgres(home / "postgres", s.postgres_port)
                self.processes.append(pg)
                server_url = pg.start()
                updates["database_url"] = server_url.rsplit("/", 1)[0] + "/" + DATABASE
                asyncio.run(ensure_database(server_url, DATABASE))
            if not s.temporal_address:
                temporal = EmbeddedTemporal(
                    home / "temporal.db", s.temporal_port, s.temporal_ui_port
                )
                self.processes.append(temporal)
                updates["temporal_address"] = temporal.start()
        except BaseException:
            self.stop()
            raise
        resolved = s.model_copy(update=updates)
        s.runtime_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "temporal_address": resolved.temporal_address,
                    "database_url": resolved.database_url,
                    "api_url": f"http://{s.api_host}:{s.api_port}",
                }
            )
        )
        return resolved

    def stop(self) -> None:
        self.settings.runtime_file.unlink(missing_ok=True)
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:  # the next server must still be stopped
                log.error("could not stop", server=process.name, error=str(exc))
                process.kill_now()

    def kill(self) -> None:
        """Every server killed at once (SIGKILL to its process group), without the orderly
        shutdown `stop` waits for: what a second Ctrl-C asks for."""
        self.settings.runtime_file.unlink(missing_ok=True)
        for process in reversed(self.processes):
            process.kill_now()


def run(settings: Settings, processes: int | None = None) -> None:
    """`grantflow dev`: the embedded servers, migrations and demo users, then `grantflow
    worker` and `grantflow api` (in `processes` processes) as processes of their own, as in
    production, until a signal. The servers and the two children run in sessions of their
    own (a terminal's Ctrl-C reaches grantflow only), so grantflow stops them in order on
    every way out: a signal at any moment, its own crash, a child that dies (ChildExited: the
    others are stopped, nothing is restarted), or a second signal (all are killed). What
    stops it from starting at all raises StartupError (one line, with the fix)."""
    startup.require_writable_home(settings.home)
    with startup.home_lock(settings.home):
        startup.require_servers(settings.temporal_address, settings.database_url)
        if port_open(settings.api_port, _local(settings.api_host)):
            raise startup.StartupError(startup.port_in_use(settings.api_port, "GRANTFLOW_API_PORT"))
        stack = EmbeddedStack(settings)
        stop = Stop(force=stack.kill)
        with stop.installed():
            try:
                resolved = stack.start()
                demo = asyncio.run(prepare(resolved))
                if demo:
                    save_demo_tokens(settings, demo)
                supervise(resolved, stack, stop, demo, processes or settings.api_processes)
            except KeyboardInterrupt:
                log.info("stopped before serving")
            finally:
                stop.stopping = True
                stack.stop()


class ChildExited(RuntimeError):
    """The worker or the API of `grantflow dev` ended on its own; the message is one line."""


def supervise(
    settings: Settings, stack: EmbeddedStack, stop: Stop, demo: list[DemoUser], processes: int
) -> None:
    """Start the worker, then the API, show the banner once the API answers, and watch both
    until a signal. Both join the stack's processes, which it stops in reverse: the API
    first (no new work; its open requests still have a worker to answer them), then the
    worker (its activities finish or go back to the server), then the servers."""
    env, home = child_environment(settings), settings.home.resolve()
    worker = GrantflowChild(["worker"], env, home / "worker.log", echo="worker | ")
    api_args = ["api", "--processes", str(processes)]
    api = GrantflowChild(api_args, env, home / "api.log", echo="api    | ", orphaned=signal.SIGTERM)
    children = [worker, api]
    # While serving, a signal only sets `stop.requested`, which the loops below watch.
    with stop.serving(lambda: None):
        for child in children:
            stack.processes.append(child)
            child.start()
        try:
            asyncio.run(_until_serving(settings, worker, api, stop))
            if not stop.requested:
                with echoing:
                    show_banner(settings, demo)
                    sys.stdout.flush()
            while not stop.requested:
                for child in children:
                    if ended := child.exited():
                        raise ChildExited(f"{ended}; grantflow stopped everything")
                time.sleep(0.2)
        finally:
            stop.stopping = True
            log.info("shutting down")


async def _until_serving(
    settings: Settings, worker: GrantflowChild, api: GrantflowChild, stop: Stop, within: float = 120
) -> None:
    """Until the API answers /readyz and the worker polls its task queue (the banner's "is
    running" is then true: a first submission finds a worker); a child that ends meanwhile
    did not start."""
    assert settings.temporal_address
    url = f"http://{_local(settings.api_host)}:{settings.api_port}/readyz"
    client = await connect_with_retry(settings.temporal_address, settings.temporal_namespace)
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while not stop.requested:
            for child in (worker, api):
                if ended := child.exited():
                    raise startup.StartupError(ended)
            with contextlib.suppress(httpx.HTTPError):
                answering = (await http.get(url)).status_code == 200
                if answering and await worker.polling(client, settings.task_queue):
                    return
            if time.monotonic() > deadline:
                raise startup.StartupError(
                    f"the API or the worker not ready within {within:.0f}s: see their lines "
                    f"above (and {api.log_path}, {worker.log_path})"
                )
            await asyncio.sleep(0.2)


def _local(host: str) -> str:
    """Where this machine reaches a server bound to `host` (every address: the loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def save_demo_tokens(settings: Settings, demo: list[DemoUser]) -> None:
    tokens = settings.home / "demo-tokens.json"
    # Created 0600: the tokens are never readable by others, not even for a moment.
    fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps([d.model_dump(mode="json") for d in demo], indent=2))


async def ensure_database(server_url: str, name: str, attempts: int = 60) -> None:
    # The port opens before PostgreSQL accepts connections ("the database system is starting
    # up"), for longer on a loaded machine.
    for attempt in range(attempts):
        try:
            conn = await asyncpg.connect(server_url)
            break
        except asyncpg.CannotConnectNowError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')  # a constant identifier, not a value
    finally:
        await conn.close()


async def connect_with_retry(
    address: str,
    namespace: str,
    attempts: int = 120,  # a minute: after an unclean stop Temporal may take over 30 s to listen
    telemetry: observability.ClientTelemetry | None = None,
) -> Client:
    telemetry = telemetry or observability.ClientTelemetry()
    for attempt in range(attempts):
        try:
            return await connect(
                address,
                namespace,
                runtime=telemetry.runtime,
                interceptors=telemetry.interceptors,
            )
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def prepare(settings: Settings) -> list[DemoUser]:
    """Migrations, search attributes and (on an empty database) the demo users."""
    assert settings.database_url and settings.temporal_address
    conn = await asyncpg.connect(settings.database_url)
    try:
        applied = await migrate(conn)
        if applied:
            log.info("migrations applied", versions=[m.version for m in applied])
        demo = await create_demo_users(conn) if settings.env == "development" else []
    finally:
        await conn.close()
    client = await connect_with_retry(settings.temporal_address, settings.temporal_namespace)
    added = await ensure_search_attributes(client)
    if added:
        log.info("search attributes registered", names=added)
    return demo


async def serve(
    settings: Settings,
    *,
    worker: bool,
    api: bool,
    stop: Stop | None = None,
) -> None:
    """Run the worker and/or the API until SIGINT, SIGTERM or SIGHUP, then stop the API first
    (no new work), then the worker (in-flight activities finish or go back to the server). A
    second signal exits at once (`stop.force` first)."""
    stop = stop or Stop()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wake() -> None:  # from a signal handler: the loop may be anywhere in its iteration
        loop.call_soon_threadsafe(stopped.set)

    with stop.installed(), stop.serving(wake):
        await _serve(settings, worker=worker, api=api, stop=stop, until=stopped)


async def _serve(
    settings: Settings,
    *,
    worker: bool,
    api: bool,
    stop: Stop,
    until: asyncio.Event,
) -> None:
    assert settings.database_url and settings.temporal_address
    telemetry = observability.start(settings, worker=worker, api=api)
    client = await connect_with_retry(
        settings.temporal_address, settings.temporal_namespace, telemetry=telemetry
    )
    if worker:
        await warn_unless_drains(client)
    # One pool each, as in production where they are separate processes: a burst of requests
    # can never starve the activities that the requests are waiting on.
    api_pool = await create_pool(settings.database_url) if api else None
    worker_pool = await create_pool(settings.database_url) if worker else None
    tasks: list[asyncio.Task[None]] = []
    server: _Server | None = None
    running_worker = (
        build_worker(
            client, worker_pool, settings.task_queue, sender=sender_from_settings(settings)
        )
        if worker_pool
        else None
    )
    try:
        if running_worker:
            tasks.append(asyncio.create_task(running_worker.run()))
            log.info("worker started", task_queue=settings.task_queue)
        if api_pool:
            app = create_app(settings, Resources(settings, api_pool, client))
            server = _Server(
                uvicorn.Config(
                    app,
                    host=settings.api_host,
                    port=settings.api_port,
                    log_config=None,
                    lifespan="on",
                )
            )
            tasks.append(asyncio.create_task(_api(server)))
        waiter = asyncio.create_task(until.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter:
                task.result()  # a crashed worker or API stops everything, loudly
    finally:
        stop.stopping = True
        log.info("shutting down")
        if server:
            server.should_exit = True
        if running_worker:
            await running_worker.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in (api_pool, worker_pool):
            if pool:
                await pool.close()


async def _api(server: _Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn exits the process when it cannot bind; escaping the event loop, that skipped
        # the orderly stop below, and the worker's shutdown then hung with the servers up.
        port = server.config.port
        if port_open(port, server.config.host):
            raise startup.StartupError(startup.port_in_use(port, "GRANTFLOW_API_PORT")) from None
        raise startup.StartupError(
            f"the API did not start on {server.config.host}:{port} (exit code {exc.code}): "
            "see the line above"
        ) from None


def show_banner(settings: Settings, demo: list[DemoUser]) -> None:
    console = Console()
    base = f"http://{settings.api_host}:{settings.api_port}"
    console.print(f"\n[bold green]grantflow is running[/]  (data in {settings.home.resolve()})")
    console.print(f"  Pages        {base}/  (demo e-mails and passwords below)")
    console.print(f"  API          {base}")
    console.print(f"  API docs     {base}/docs")
    if not os.environ.get("TEMPORAL_ADDRESS"):
        console.print(f"  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}")
    if demo:
        table = Table(title="Demo users", title_justify="left")
        for column in ("role", "name", "institution", "specialty"):
            table.add_column(column)
        for d in demo:
            table.add_row(
                d.user.role, d.user.name, d.user.institution_id or "", d.user.specialty or ""
            )
        console.print(table)
        console.print(
            "Their e-mails, passwords and tokens, shown only now "
            f"(and kept in {settings.home / 'demo-tokens.json'}):"
        )
        for d in demo:  # plain lines, never truncated, so they can be copied
            print(
                f"  {d.user.role.value:<11} {d.user.name:<18} {d.email:<20} {d.password:<14} "
                f"{d.token}"
            )
    console.print("Ctrl-C stops everything; your data stays for the next `make run`.\n")
