"""The `grantflow` command: the stack (dev, worker, api, migrate, simulate) here, and what
admins run (users, applications, export, history, waiting, check) from grantflow/cli/admin.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape

from grantflow.cli import admin, backup, common
from grantflow.settings import Settings

app = typer.Typer(
    help="grantflow: innovation grants as durable workflows. Data goes to stdout, messages to "
    "stderr. Exit codes: 0 done; 1 the command ran and its answer is no (check, simulate); "
    "2 nothing was done (a usage error, or refused: an unknown id, a rule broken, a server "
    "unavailable).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@contextmanager
def starting() -> Iterator[None]:
    """What keeps a server command from starting ends it with one line and its fix, exit 2."""
    from grantflow.dev.startup import StartupError

    try:
        yield
    except StartupError as exc:
        common.fail(str(exc))


def _checked(settings: Settings) -> Settings:
    """The servers these settings name answer, or the command ends here in one line."""
    from grantflow.dev.startup import require_servers

    with starting():
        require_servers(settings.temporal_address, settings.database_url)
    return settings


@app.command()
def dev(
    processes: Annotated[
        int | None,
        typer.Option(min=1, help="API processes on one port (default: GRANTFLOW_API_PROCESSES)."),
    ] = None,
) -> None:
    """Start everything on embedded servers (what `make run` does): PostgreSQL, the Temporal
    dev server with its Web UI, migrations, demo users, then `grantflow worker` and `grantflow
    api` as processes of their own, their lines led by their names. Exits 1 when either ends
    on its own (after stopping the rest)."""
    from grantflow.dev.stack import ChildExited, run

    with starting():
        try:
            run(common.settings(), processes)
        except ChildExited as exc:
            common.messages.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


@app.command()
def worker() -> None:
    """Run a worker against the running stack (or TEMPORAL_ADDRESS / DATABASE_URL)."""
    from grantflow.api import server
    from grantflow.dev.stack import serve

    settings = _checked(common.resolved())
    with starting():
        server.run(serve(settings, worker=True, api=False))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    processes: Annotated[
        int | None,
        typer.Option(min=1, help="API processes on one port [default: GRANTFLOW_API_PROCESSES]."),
    ] = None,
) -> None:
    """Run the HTTP API against the running stack (or TEMPORAL_ADDRESS / DATABASE_URL), on
    uvloop and httptools when they are installed."""
    from grantflow.api import server
    from grantflow.dev.stack import serve

    settings = _checked(common.resolved())
    settings = settings.model_copy(
        update={
            "api_host": host or settings.api_host,
            "api_port": port or settings.api_port,
            "api_processes": processes or settings.api_processes,
        }
    )
    with starting():
        if settings.api_processes > 1:
            server.serve_processes(settings, settings.api_processes)
        else:
            server.run(serve(settings, worker=False, api=True))


@app.command(name="migrate")
def migrate_command() -> None:
    """Apply the SQL migrations not applied yet and register the search attributes."""
    from grantflow.dev.stack import prepare

    settings = _checked(common.resolved()).model_copy(update={"env": "production"})  # no demo
    asyncio.run(prepare(settings))
    common.messages.print("[green]database and search attributes are up to date[/]")


# What admins run, listed in --help between the stack's commands and the simulation.
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.applications_app, name="applications")
for command in (admin.export, admin.history, admin.waiting):
    app.command()(command)
app.command(name="check")(admin.check)
# What operators run around the embedded stack's data.
app.command()(backup.backup)
app.command()(backup.restore)


@app.command()
def simulate(
    applications: Annotated[int, typer.Option(min=1, help="Applications received.")] = 186,
    institutions: Annotated[int, typer.Option(min=1, help="Applying institutions.")] = 46,
    reviewers: Annotated[int, typer.Option(min=5, help="Experts, over five specialties.")] = 60,
    clinics: Annotated[int, typer.Option(min=1, help="Clinics that can pilot.")] = 30,
    seed: Annotated[int, typer.Option(help="Same seed, same funnel.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="On embedded servers of its own, then stopped.")
    ] = False,
    api_url: Annotated[
        str | None, typer.Option(help="The API (default: the running stack's).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds before giving up on what is not final.")
    ] = 1800,
) -> None:
    """Play a whole competition through the HTTP API (applicants, reviewers, council, clinics,
    admins) with second-scale durations, print the funnel and the timings, then check every
    workflow against its row. Exits 1 unless every application ends final and consistent."""
    from grantflow.simulation.command import run
    from grantflow.simulation.run import Options

    settings = common.settings() if embedded else common.resolved()
    options = Options(
        applications=applications,
        institutions=institutions,
        reviewers=reviewers,
        clinics=clinics,
        seed=seed,
        timeout=timeout,
    )
    figures = run(options, settings, embedded=embedded, as_json=as_json, api_url=api_url)
    if figures["timed_out"] or not (figures["all_final"] and figures["consistent"]):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
