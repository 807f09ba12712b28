"""`grantflow simulate`: against the running stack, or on embedded servers of its own in a
temporary folder; progress bars on stderr, the funnel (or one JSON object) on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grantflow.db import create_pool
from grantflow.embedded import free_port
from grantflow.output import print_json
from grantflow.settings import Settings
from grantflow.simulation.http import Api
from grantflow.simulation.plan import Fate, council_decision, plan
from grantflow.simulation.run import Options, simulate
from grantflow.stack import connect_with_retry

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
    """`grantflow dev` in its own process (so the actors and the system under test do not
    share an event loop), on free ports with its data in a temporary folder; stopped with
    Ctrl-C's signal, which stops the API, the worker and both servers in order."""
    with tempfile.TemporaryDirectory(prefix="grantflow-simulate-") as folder:
        yield from _dev_process(Path(folder))


def _dev_process(home: Path) -> Iterator[Settings]:
    env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "DATABASE_URL")}
    env |= {
        "GRANTFLOW_HOME": str(home),
        "GRANTFLOW_API_PORT": str(free_port()),
        "GRANTFLOW_TEMPORAL_PORT": str(free_port()),
        "GRANTFLOW_TEMPORAL_UI_PORT": str(free_port()),
        "GRANTFLOW_POSTGRES_PORT": str(free_port()),
    }
    # SIGTERM unwinds like Ctrl-C, so that the stack stops and the folder goes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with (home / "dev.log").open("wb") as log:
        dev = subprocess.Popen(
            [str(Path(sys.executable).parent / "grantflow"), "dev"],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield _wait_ready(dev, home)
        finally:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=60)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait()


def _wait_ready(dev: subprocess.Popen[bytes], home: Path, timeout: float = 180) -> Settings:
    settings = Settings(home=home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dev.poll() is not None:
            tail = (home / "dev.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"`grantflow dev` exited with {dev.returncode}:\n{tail}")
        runtime = settings._running_stack()
        if runtime:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{runtime['api_url']}/healthz", timeout=2).status_code == 200:
                    return settings.resolved()
        time.sleep(0.5)
    raise RuntimeError("the embedded stack did not start in time")


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
