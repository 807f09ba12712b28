"""`grantflow simulate`: against the running stack, or on embedded servers of its own in a
temporary folder; progress bars on stderr, the funnel (or one JSON object) on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.app import create_app
from api.deps import Resources
from grantflow.db import create_pool
from grantflow.embedded import free_port
from grantflow.notify import sender_from_settings
from grantflow.output import print_json
from grantflow.settings import Settings
from grantflow.simulation.http import Api
from grantflow.simulation.plan import Fate, council_decision, plan
from grantflow.simulation.run import Options, simulate
from grantflow.stack import EmbeddedStack, connect_with_retry, prepare
from workers.main import build_worker

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
    if not embedded:
        url = api_url or _api_url(settings)
        figures = asyncio.run(_against(settings, url, options))
    else:
        with tempfile.TemporaryDirectory(prefix="grantflow-simulate-") as home:
            own = settings.model_copy(
                update={
                    "home": Path(home),
                    "temporal_address": None,
                    "database_url": None,
                    "api_port": free_port(),
                    "temporal_port": free_port(),
                    "temporal_ui_port": free_port(),
                    "postgres_port": free_port(),
                    "env": "development",
                }
            )
            stack = EmbeddedStack(own)
            try:
                resolved = stack.start()
                figures = asyncio.run(_embedded(resolved, options))
            finally:
                stack.stop()
    if as_json:
        print_json(figures)
    else:
        show(figures)
    return figures


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
        async with httpx.AsyncClient(base_url=url) as http:
            return await _play(pool, client, Api(http), options)
    finally:
        await pool.close()


async def _embedded(settings: Settings, options: Options) -> dict[str, Any]:
    await prepare(settings)
    async with _services(settings) as (client, pool):
        url = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=url) as http:
            return await _play(pool, client, Api(http), options)


@contextlib.asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    """The worker and the API in this process, on the embedded servers, stopped in order."""
    assert settings.database_url and settings.temporal_address
    client = await connect_with_retry(settings.temporal_address, settings.temporal_namespace)
    api_pool = await create_pool(settings.database_url, max_size=20)
    worker_pool = await create_pool(settings.database_url, max_size=20)
    worker = build_worker(
        client, worker_pool, settings.task_queue, sender=sender_from_settings(settings)
    )
    app = create_app(settings, Resources(settings, api_pool, client))
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.api_host, port=settings.api_port, log_config=None, lifespan="on"
        )
    )
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(server.serve())]
    try:
        while not server.started:
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done():
                        t.result()
            await asyncio.sleep(0.05)
        yield client, api_pool
    finally:
        server.should_exit = True
        await worker.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api_pool.close()
        await worker_pool.close()


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
    if figures["disagreements"]:
        console.print(figures["disagreements"])
