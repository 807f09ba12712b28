"""The `grantflow` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console

from grantflow.logging import configure_logging
from grantflow.settings import Settings
from schemas.common import OrganisationType, Role
from schemas.users import UserCreate

app = typer.Typer(
    help="grantflow: innovation grants as durable workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Users and their bearer tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
console = Console()


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _resolved() -> Settings:
    try:
        return _settings().resolved()
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


@app.command()
def dev() -> None:
    """Start everything on embedded servers (what `make run` does): PostgreSQL, the Temporal
    dev server with its Web UI, migrations, demo users, the worker and the API."""
    from grantflow.dev.stack import EmbeddedStack, prepare, serve

    settings = _settings()
    stack = EmbeddedStack(settings)
    try:
        resolved = stack.start()
        demo = asyncio.run(prepare(resolved))
        if demo:
            tokens = settings.home / "demo-tokens.json"
            # Created 0600: the tokens are never readable by others, not even for a moment.
            fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps([d.model_dump(mode="json") for d in demo], indent=2))
        asyncio.run(serve(resolved, worker=True, api=True, banner=demo))
    finally:
        stack.stop()


@app.command()
def worker() -> None:
    """Run a worker against the running stack (or TEMPORAL_ADDRESS / DATABASE_URL)."""
    from grantflow.dev.stack import serve

    asyncio.run(serve(_resolved(), worker=True, api=False))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
) -> None:
    """Run the HTTP API against the running stack (or TEMPORAL_ADDRESS / DATABASE_URL)."""
    from grantflow.dev.stack import serve

    settings = _resolved()
    settings = settings.model_copy(
        update={"api_host": host or settings.api_host, "api_port": port or settings.api_port}
    )
    asyncio.run(serve(settings, worker=False, api=True))


@app.command(name="migrate")
def migrate_command() -> None:
    """Apply the SQL migrations not applied yet and register the search attributes."""
    from grantflow.dev.stack import prepare

    settings = _resolved().model_copy(update={"env": "production"})  # no demo users here
    asyncio.run(prepare(settings))
    console.print("[green]database and search attributes are up to date[/]")


@users_app.command("create")
def users_create(
    role: Annotated[Role, typer.Option(help="applicant, reviewer, council, admin or coordinator.")],
    name: Annotated[str, typer.Option(help="The person's name.")],
    institution: Annotated[
        str | None, typer.Option(help="Applicants, reviewers; a coordinator's clinic.")
    ] = None,
    organisation_type: Annotated[
        OrganisationType, typer.Option(help="The institution's type (when it is new).")
    ] = OrganisationType.medical_institution,
    specialty: Annotated[str | None, typer.Option(help="Reviewers.")] = None,
    email: Annotated[
        str | None,
        typer.Option(help="Staff who use the pages: sends (and prints) a set-password link."),
    ] = None,
) -> None:
    """Create a user and print its bearer token (shown once, stored only as a hash). With
    --email, the person also gets a single-use link to choose a password for the pages."""
    from grantflow import i18n
    from grantflow.db import create_pool
    from grantflow.services.account import email_available, invite
    from grantflow.services.errors import ServiceError
    from grantflow.store.users import create_user

    settings = _resolved()
    try:
        new = UserCreate(
            name=name,
            role=role,
            institution=institution,
            specialty=specialty,
            organisation_type=organisation_type if institution else None,
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None

    async def create() -> None:
        assert settings.database_url
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            if email:  # checked first: a taken or malformed address creates no user
                await email_available(pool, email)
            async with pool.acquire() as conn:
                made = await create_user(conn, new)
            link = await invite(pool, settings, uuid.UUID(made.user.id), email) if email else None
        finally:
            await pool.close()
        console.print(f"created {made.user.role} {made.user.name} ({made.user.id})")
        if link:
            console.print(f"set-password link for {email} (single use, 7 days):")
            print(link)
        print(made.token)  # alone on the last line of stdout, so scripts can capture it

    try:
        with i18n.using("en"):  # the command line speaks English, as its other messages do
            asyncio.run(create())
    except (ValueError, ServiceError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


# --- admins: find and export (grantflow/cli/admin.py) -------------------------------------
from grantflow.cli.admin import applications_app, export  # noqa: E402

app.add_typer(applications_app, name="applications")
app.command()(export)


# --- what happened to an application, and what it waits for (admins' inspection) -----------


def _inspect(application_id: str, what: str) -> Any:
    """Run the history or waiting look-up against the running stack (or the real servers)."""
    import uuid

    from grantflow.services.history import application_history
    from grantflow.services.waiting import ApplicationNotFound, waiting_for
    from grantflow.temporal import connect

    try:
        app_uuid = uuid.UUID(application_id)
    except ValueError:
        console.print(f"[red]not an application id: {application_id}[/]")
        raise typer.Exit(2) from None
    settings = _resolved()

    async def look() -> Any:
        assert settings.database_url and settings.temporal_address
        client = await connect(settings.temporal_address, settings.temporal_namespace)
        if what == "waiting":
            return await waiting_for(client, str(app_uuid))
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await application_history(client, conn, app_uuid, ui_url=settings.ui_url)
        finally:
            await conn.close()

    try:
        return asyncio.run(look())
    except ApplicationNotFound:
        console.print(f"[red]no application {application_id}[/]")
        raise typer.Exit(1) from None


def _print_waiting(stage: str, waiting: list[Any]) -> None:
    console.print(f"[bold]stage[/] {stage}")
    if not waiting:
        console.print("waiting for nothing")
    for w in waiting:
        by = f" by {w.by.isoformat()}" if w.by else ""
        otherwise = f"; otherwise {w.otherwise}" if w.otherwise else ""
        console.print(f"waiting for [bold]{w.who}[/]: {w.what}{by}{otherwise}", highlight=False)


@app.command()
def history(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The same, as JSON.")] = False,
) -> None:
    """Everything that happened to an application, oldest first: its audit trail and its
    workflows' events in plain words (with links to the Temporal Web UI), under a header
    saying what it is waiting for now."""
    found = _inspect(application_id, "history")
    if as_json:
        print(found.model_dump_json(indent=2))
        return
    _print_waiting(found.stage, found.waiting)
    for e in found.entries:
        where = "audit" if e.source == "audit" else e.workflow_id.split("-", 1)[0]
        console.print(f"{e.at:%Y-%m-%d %H:%M:%S} [dim]{where:<11}[/] {e.text}", highlight=False)


@app.command()
def waiting(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The same, as JSON.")] = False,
) -> None:
    """What an open application is waiting for: who must act, what, by when, and what
    happens if they don't (from its workflows' own state)."""
    found = _inspect(application_id, "waiting")
    if as_json:
        print(found.model_dump_json(indent=2))
        return
    _print_waiting(found.stage, found.waiting)


# --- check and simulate (issues 6 and 7) -------------------------------------------------------


@app.command(name="check")
def check_command(
    programme: Annotated[
        str | None, typer.Option(help="Only this programme's applications (its id).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Final applications too, not only open ones.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Compare every open application's workflow with its PostgreSQL row (stage, change
    number, amounts, outcome) and list each disagreement; exits 1 if there is any."""
    from grantflow.cli.output import print_check
    from grantflow.dev.stack import connect_with_retry
    from grantflow.services.consistency import check

    settings = _resolved()

    async def run() -> bool:
        assert settings.database_url and settings.temporal_address
        client = await connect_with_retry(settings.temporal_address, settings.temporal_namespace)
        conn = await asyncpg.connect(settings.database_url)
        try:
            result = await check(conn, client, programme, every=every)
        finally:
            await conn.close()
        print_check(result, as_json=as_json)
        return result.consistent

    consistent = asyncio.run(run())
    # The exit status is the answer scripts read. The Temporal client's native runtime has been
    # seen to abort the interpreter's shutdown (SIGABRT after the report was printed), which
    # would turn "disagreements" into a crash: leave without that shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if consistent else 1)


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

    settings = _settings() if embedded else _resolved()
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
