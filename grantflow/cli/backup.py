"""`grantflow backup` and `grantflow restore`: the embedded stack's data to a directory and
back (grantflow/dev/backup.py), with a progress bar on stderr. Production backs up its own
PostgreSQL servers instead: docs/operations.md."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from grantflow.cli.common import fail, messages, settings
from grantflow.dev import backup as backups


@contextmanager
def _progress() -> Iterator[backups.Report]:
    """A bar per step (Temporal's pages, PostgreSQL's tables), as the step reports them."""
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn())
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, TimeElapsedColumn(), console=messages) as progress:

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        yield report


def backup(
    out: Annotated[Path, typer.Option("--out", help="A new or empty directory for the backup.")],
) -> None:
    """Back up the running embedded stack (`make run`) under GRANTFLOW_HOME: Temporal's SQLite
    file, copied while it runs, then the application database (pg_dump), in that order so
    that the two agree. Restore it with `grantflow restore`."""
    try:
        with _progress() as report:
            manifest = backups.backup(settings(), out, report)
    except backups.BackupError as exc:
        fail(str(exc))
    messages.print(f"[green]backup of {manifest['grantflow_home']} written to {out.resolve()}[/]")


def restore(
    source: Annotated[Path, typer.Argument(help="A directory `grantflow backup` wrote.")],
) -> None:
    """Restore a backup into GRANTFLOW_HOME, which must be empty (or not exist yet); then
    `make run` (with that GRANTFLOW_HOME) starts on it, every application where it was."""
    try:
        with _progress() as report:
            manifest = backups.restore(settings(), source, report)
    except backups.BackupError as exc:
        fail(str(exc))
    home = settings().home.resolve()
    messages.print(
        f"[green]restored the backup of {manifest['created_at']} into {home}: "
        "start it with `make run`[/]"
    )
