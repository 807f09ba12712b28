"""`grantflow applications list` and `grantflow export`: what admins run against the database
(the same queries as `GET /v1/admin/applications` and the API's export)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grantflow.store import admin
from schemas.admin import AdminApplicationPage, Dataset, ExportFormat
from schemas.common import Stage

applications_app = typer.Typer(help="Find applications (admins).", no_args_is_help=True)
console = Console()


def _database_url() -> str:
    # The CLI's settings, with its message when no stack runs (imported late: cli imports us).
    from grantflow.cli.main import _resolved

    settings = _resolved()
    assert settings.database_url
    return settings.database_url


@applications_app.command("list")
def list_applications(
    programme: Annotated[uuid.UUID | None, typer.Option(help="A programme's id.")] = None,
    stage: Annotated[list[Stage] | None, typer.Option(help="A stage (repeat for several).")] = None,
    institution: Annotated[str | None, typer.Option(help="An institution's id.")] = None,
    specialty: Annotated[str | None, typer.Option()] = None,
    overdue: Annotated[bool, typer.Option(help="Only those with a deadline passed.")] = False,
    flagged: Annotated[bool, typer.Option(help="Only those waiting for an admin.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    cursor: Annotated[str | None, typer.Option(help="A page's next cursor.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, not a table.")] = False,
) -> None:
    """Applications matching every filter, newest first, with the counts by stage: the same
    filters and pages as `GET /v1/admin/applications`."""
    url = _database_url()
    filters = admin.Filters(
        programme_id=programme,
        stages=tuple(stage or ()),
        institution_id=institution,
        specialty=specialty,
        overdue=overdue,
        flagged=flagged,
    )

    async def fetch() -> AdminApplicationPage:
        conn = await asyncpg.connect(url)
        try:
            return await admin.page(conn, filters, limit=limit, cursor=cursor)
        finally:
            await conn.close()

    try:
        page = asyncio.run(fetch())
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if as_json:
        print(page.model_dump_json(indent=2))
        return
    _print(page)


def _print(page: AdminApplicationPage) -> None:
    table = Table("id", "stage", "title", "institution", "specialty", "submitted", "!")
    for a in page.items:
        marks = ("overdue " if a.overdue else "") + ("flagged" if a.flag_reason else "")
        table.add_row(
            a.id,
            a.stage.value,
            a.title[:40],
            a.institution_id or "",
            a.specialty,
            a.submitted_at.strftime("%Y-%m-%d %H:%M"),
            marks.strip(),
        )
    console.print(table)
    stages = ", ".join(f"{s}: {n}" for s, n in sorted(page.by_stage.items()))
    console.print(f"{page.total} match ({stages or 'none'})")
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}")


def export(
    programme_id: Annotated[uuid.UUID, typer.Argument(help="The programme's id.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="csv or json.")] = (
        ExportFormat.csv
    ),
    out: Annotated[Path, typer.Option(help="The folder to write the files to.")] = Path("export"),
) -> None:
    """Export a programme's applications, reviews (anonymised), council decisions, budget
    ledger and reports, one file per dataset in OUT, with a progress bar."""
    from grantflow.services.export import programme_exists, to_folder

    url = _database_url()
    if not asyncio.run(programme_exists(url, programme_id)):
        console.print(f"[red]no programme {programme_id}[/]")
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:

        def track(dataset: Dataset, total: int) -> Callable[[], None]:
            task = progress.add_task(dataset.value, total=total)
            return lambda: progress.advance(task)

        written = asyncio.run(to_folder(url, programme_id, format, out, track))
    for path in written:
        console.print(f"wrote {path}")
    print(json.dumps([str(p) for p in written]))  # alone on stdout, for scripts
