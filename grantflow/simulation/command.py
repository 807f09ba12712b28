"""`grantflow simulate`: against the running stack, or on embedded servers of its own in a
temporary folder; progress bars on stderr, the funnel (or one JSON object) on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grantflow.cli.output import print_json
from grantflow.db import create_pool
from grantflow.dev.children import GrantflowChild, child_environment
from grantflow.dev.embedded import EmbeddedPostgres, EmbeddedTemporal, ManagedProcess, free_port
from grantflow.dev.stack import DATABASE, connect_with_retry, ensure_database, prepare
from grantflow.settings import Settings
from grantflow.simulation.http import Api
from grantflow.simulation.plan import Fate, council_decision, plan
from grantflow.simulation.run import Options, simulate

BARS = {
    "intake": "applications in (late ones refused)",
    "review": "reviewed",
    "council": "decided by the council",
    "pilot": "pilots decided",
    "final": "in a final stage",
}


def run(
    options: Options, settings: Settings, *, embedded: bool, as_json: bool, api_url: str | None
) -> dict[str, Any]:
    """Run the simulation and print its figures; returns them."""
    if embedded:
        with _dev_stack() as own:
            figures = asyncio.run(_against(own, _api_url(own), options))
    else:
        figures = asyncio.run(_against(settings, api_url or _api_url(settings), options))
    if as_json:
        print_json(figures)
    else:
        show(figures)
    return figures


@contextlib.contextmanager
def _dev_stack() -> Iterator[Settings]:
    """Servers of its own in a temporary folder, shaped as in production: PostgreSQL and the
    Temporal dev server (both throw-away: no fsync, history in memory, since the folder goes
    at the end), then `grantflow worker` and `grantflow api` as processes of their own, so the
    actors and the system under test never share an event loop."""
    # SIGTERM unwinds like Ctrl-C, so that everything stops and the folder goes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="grantflow-simulate-") as folder:
        home = Path(folder)
        servers: list[ManagedProcess] = []
        try:
            settings = _servers(home, servers)
            with _process(home, "worker", settings), _process(home, "api", settings):
                _wait_ready(settings)
                yield settings
        except BaseException:
            _keep_logs(home)
            raise
        finally:
            for server in reversed(servers):
                server.stop()


def _keep_logs(home: Path) -> None:
    """The simulation failed: its servers' and processes' logs outlive the folder, so that
    what went wrong in the worker or the API can be read."""
    kept = Path(tempfile.mkdtemp(prefix="grantflow-simulate-logs-"))
    for log in home.glob("*.log"):
        shutil.copy2(log, kept / log.name)
    Console(stderr=True).print(f"The worker's, the API's and Temporal's logs are kept in {kept}")


def _servers(home: Path, servers: list[ManagedProcess]) -> Settings:
    pg = EmbeddedPostgres(home / "postgres", free_port(), durable=False)
    servers.append(pg)
    server_url = pg.start()
    asyncio.run(ensure_database(server_url, DATABASE))
    temporal = EmbeddedTemporal(None, free_port(), None, log_path=home / "temporal.log")
    servers.append(temporal)
    settings = Settings(
        home=home,
        database_url=server_url.rsplit("/", 1)[0] + "/" + DATABASE,
        temporal_address=temporal.start(),
        api_port=free_port(),
    )
    asyncio.run(prepare(settings))
    return settings


@contextlib.contextmanager
def _process(home: Path, command: str, settings: Settings) -> Iterator[None]:
    """`grantflow <command>` against the servers, its output in `<command>.log`, stopped as
    an orchestrator stops it."""
    child = GrantflowChild([command], child_environment(settings), home / f"{command}.log")
    child.start(cwd=home)
    try:
        yield
    finally:
        child.stop()


def _wait_ready(settings: Settings, timeout: float = 120) -> None:
    url = f"{_api_url(settings)}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("the simulation's API did not start in time")


def _api_url(settings: Settings) -> str:
    runtime = settings._running_stack()
    if runtime and runtime.get("api_url"):
        return str(runtime["api_url"])
    return f"http://{settings.api_host}:{settings.api_port}"


async def _against(settings: Settings, url: str, options: Options) -> dict[str, Any]:
    assert settings.database_url and settings.temporal_address
    client = await connect_with_retry(settings.temporal_address, settings.temporal_namespace)
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=url, limits=limits) as http:
            return await _play(pool, client, Api(http), options)
    finally:
        await pool.close()


async def _play(pool: Any, client: Any, api: Api, options: Options) -> dict[str, Any]:
    totals = _totals(options)
    with Progress(
        TextColumn("{task.description:<38}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        bars = {k: progress.add_task(BARS[k], total=totals[k]) for k in BARS}
        advance: Callable[[str], None] = lambda stage: progress.advance(bars[stage])  # noqa: E731
        return await simulate(pool, client, api, options, advance)


def _totals(o: Options) -> dict[str, int]:
    """What each bar counts up to, as the seed intends."""
    plans = plan(o.seed, o.applications, o.institutions, o.clinics)
    apps = [p for p in plans if p.fate != Fate.late]
    going = [p for p in apps if p.fate == Fate.council]
    return {
        "intake": len(plans),
        "review": len(going),
        "council": len(going),
        "pilot": sum(
            1 for p in going if council_decision(o.seed, p, o.council_members) == "approve"
        ),
        "final": len(apps),
    }


def show(figures: dict[str, Any]) -> None:
    """The funnel and the timings, as tables on stdout."""
    console = Console()
    funnel = Table(title="Funnel", title_justify="left")
    funnel.add_column("final stage")
    funnel.add_column("applications", justify="right")
    for stage, count in figures["final_stages"].items():
        funnel.add_row(stage, str(count))
    funnel.add_row("refused at intake (late)", str(figures["late_refused"]))
    console.print(funnel)
    money, budget = Table(title="Outcome", title_justify="left"), figures["budget"]
    money.add_column("figure")
    money.add_column("value", justify="right")
    rows = [
        ("applications", figures["applications"]),
        ("approved", f"{figures['approved']} ({figures['approval_rate']:.0%})"),
        ("budget, RUB", f"{budget['total']:,}"),
        ("requested, RUB", f"{budget['requested']:,}"),
        ("approved, RUB", f"{budget['approved']:,}"),
        ("disbursed, RUB", f"{budget['disbursed']:,}"),
        ("remaining, RUB", f"{budget['remaining']:,}"),
        ("pilots (sites)", f"{figures['pilots']} in {figures['clinics_piloting']} clinics"),
        ("implemented", f"{figures['implemented']} ({figures['implemented_share']:.0%})"),
        ("council sessions", figures["council_sessions"]),
        ("time taken, s", figures["duration_s"]),
        ("lifecycles per second", figures["lifecycles_per_s"]),
        ("HTTP requests", figures["http_requests"]),
        ("HTTP p50 / p99, ms", f"{figures['http_p50_ms']} / {figures['http_p99_ms']}"),
        ("history events per application", figures["events_per_application"]),
        ("every application final", figures["all_final"]),
        ("workflows and rows agree", figures["consistent"]),
    ]
    for name, value in rows:
        money.add_row(name, str(value))
    console.print(money)
    kinds = Table(title="HTTP latency by kind of request", title_justify="left")
    for column in ("kind", "requests", "p50, ms", "p99, ms"):
        kinds.add_column(column, justify="left" if column == "kind" else "right")
    for kind, row in figures["http_by_kind"].items():
        kinds.add_row(kind, str(row["requests"]), str(row["p50_ms"]), str(row["p99_ms"]))
    console.print(kinds)
    if figures["disagreements"]:
        console.print(figures["disagreements"])
