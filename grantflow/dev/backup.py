"""Backups of the embedded stack: Temporal's SQLite file and the application database, taken
from a running `grantflow dev` so that one restores to a stack where every workflow and its
row agree.

The order makes the pair consistent. Temporal's file is copied first (SQLite's online backup
API: one consistent snapshot of a file in use), then PostgreSQL is dumped (pg_dump's snapshot,
from the embedded server's own binaries). Activities are PostgreSQL's only writers and a
workflow records an activity's completion only after its write committed, so every write the
copied histories know of is in the dump. The dump may hold a few writes more, of activities
that were running when Temporal was copied: restored, their workflows run them again, and
every activity's write is idempotent (natural keys, ON CONFLICT), so they converge.

A restore goes into an empty GRANTFLOW_HOME: a fresh embedded PostgreSQL loads the dump
(pg_restore) and Temporal's file is put where `grantflow dev` keeps it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from grantflow.dev.embedded import EmbeddedPostgres, free_port, postgres_bindir
from grantflow.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
TEMPORAL_FILE = "temporal.db"  # also its name in GRANTFLOW_HOME (grantflow/dev/stack.py)
DUMP_FILE = "grantflow.dump"
DEMO_TOKENS = "demo-tokens.json"
DATABASE = "grantflow"
SQLITE_STEP_PAGES = 1024
# pg_dump --verbose and pg_restore --verbose name each table as they copy its rows.
_DUMPING = re.compile(r"dumping contents of table")
_RESTORING = re.compile(r"processing data for table")

# What a step has done so far and how much it will do: (step, done, total).
Report = Callable[[str, int, int], None]


class BackupError(Exception):
    """A backup or restore refused or failed; the message says what to do."""


def backup(settings: Settings, out: Path, report: Report) -> dict[str, Any]:
    """Back up the running embedded stack under settings.home into `out` (new or empty);
    returns the manifest written there."""
    home = settings.home.resolve()
    runtime = _embedded_stack(settings)
    _require_empty(out, "backup into an empty or new directory (--out)")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "grantflow_home": str(home),
        "files": {},
    }
    # Temporal first: see the module's docstring.
    _sqlite_copy(home / TEMPORAL_FILE, out / TEMPORAL_FILE, "Temporal (SQLite)", report)
    _pg_dump(str(runtime["database_url"]), out / DUMP_FILE, report)
    if (home / DEMO_TOKENS).exists():
        _copy_private(home / DEMO_TOKENS, out / DEMO_TOKENS)
    for name in (TEMPORAL_FILE, DUMP_FILE, DEMO_TOKENS):
        if (out / name).exists():
            manifest["files"][name] = _sha256(out / name)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def restore(settings: Settings, source: Path, report: Report) -> dict[str, Any]:
    """Restore the backup in `source` into settings.home, which must be empty; returns the
    backup's manifest. `grantflow dev` then starts on the restored data."""
    _refuse_real_servers(settings, "restore")
    home = settings.home
    _require_empty(home, "restore into an empty or new GRANTFLOW_HOME")
    manifest = _verified_manifest(source)
    existed = home.exists()
    home.mkdir(parents=True, exist_ok=True)
    try:
        _sqlite_copy(source / TEMPORAL_FILE, home / TEMPORAL_FILE, "Temporal (SQLite)", report)
        _pg_restore(source / DUMP_FILE, home, report)
        if (source / DEMO_TOKENS).exists():
            _copy_private(source / DEMO_TOKENS, home / DEMO_TOKENS)
    except BaseException:
        # Leave the home as empty as it was, so the same command can simply be run again.
        if existed:
            for child in home.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(home, ignore_errors=True)
        raise
    return manifest


def _refuse_real_servers(settings: Settings, what: str) -> None:
    named = [
        name
        for name, value in (
            ("DATABASE_URL", settings.database_url),
            ("TEMPORAL_ADDRESS", settings.temporal_address),
        )
        if value
    ]
    if named:
        raise BackupError(
            f"`grantflow {what}` works on the embedded stack, but {' and '.join(named)} "
            f"{'name real servers' if len(named) > 1 else 'names a real server'}: unset it, or "
            "back up the real servers as docs/operations.md says"
        )


def _embedded_stack(settings: Settings) -> dict[str, Any]:
    _refuse_real_servers(settings, "backup")
    runtime = settings._running_stack()
    if runtime is None:
        raise BackupError(
            f"no running grantflow stack under {settings.home.resolve()}: start it with "
            "`make run` (a backup is taken from the running stack)"
        )
    if not (settings.home / TEMPORAL_FILE).exists():
        raise BackupError(f"no {TEMPORAL_FILE} in {settings.home.resolve()}: nothing to back up")
    return runtime


def _require_empty(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path.resolve()} is not empty: {what}")


def _verified_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(
            f"{source.resolve()} holds no grantflow backup (no readable {MANIFEST})"
        ) from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source / MANIFEST}: backup format {manifest.get('format')!r}")
    for name, digest in manifest["files"].items():
        if not (source / name).exists() or _sha256(source / name) != digest:
            raise BackupError(f"{source / name} is missing or damaged (checksum differs)")
    for required in (TEMPORAL_FILE, DUMP_FILE):
        if required not in manifest["files"]:
            raise BackupError(f"{source.resolve()} lacks {required}")
    return manifest


def _sqlite_copy(source: Path, target: Path, step: str, report: Report) -> None:
    """A consistent copy of an SQLite file, also while its server writes to it (the online
    backup API restarts a step that a writer interrupted)."""

    def progress(_: int, remaining: int, total: int) -> None:
        report(step, total - remaining, total)

    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst, pages=SQLITE_STEP_PAGES, progress=progress)
    target.chmod(0o600)


def _pg_dump(database_url: str, target: Path, report: Report) -> None:
    step = "PostgreSQL (pg_dump)"
    total = asyncio.run(_table_count(database_url))
    report(step, 0, total)
    argv = [str(postgres_bindir() / "pg_dump"), "--format=custom", "--verbose"]
    argv += ["--file", str(target), "--dbname", database_url]
    _run_counting(argv, _DUMPING, step, total, report)
    target.chmod(0o600)


def _pg_restore(dump: Path, home: Path, report: Report) -> None:
    from grantflow.dev.stack import ensure_database  # the stack imports the API: only here

    step = "PostgreSQL (pg_restore)"
    total = _dumped_tables(dump)
    report(step, 0, total)
    # A port of its own: the restore may run beside the stack it was taken from.
    server = EmbeddedPostgres(home / "postgres", free_port())
    try:
        server_url = server.start()
        asyncio.run(ensure_database(server_url, DATABASE))
        database_url = server_url.rsplit("/", 1)[0] + "/" + DATABASE
        argv = [str(postgres_bindir() / "pg_restore"), "--verbose", "--exit-on-error"]
        argv += ["--no-owner", "--dbname", database_url, str(dump)]
        _run_counting(argv, _RESTORING, step, total, report)
    finally:
        server.stop()


async def _table_count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
    finally:
        await conn.close()
    return int(count)


def _dumped_tables(dump: Path) -> int:
    listing = subprocess.run(
        [str(postgres_bindir() / "pg_restore"), "--list", str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        raise BackupError(
            f"{dump} is not a pg_dump archive: {_last_line(listing.stderr.splitlines())}"
        )
    return sum(1 for line in listing.stdout.splitlines() if " TABLE DATA " in line)


def _run_counting(
    argv: list[str], marker: re.Pattern[str], step: str, total: int, report: Report
) -> None:
    """Run a PostgreSQL tool, advancing `step` at each line of its verbose output that
    `marker` finds; a failure raises with its last line."""
    done = 0
    lines: list[str] = []
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.rstrip())
        if marker.search(line):
            done += 1
            report(step, min(done, total), total)
    if process.wait() != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {_last_line(lines)}")
    report(step, total, total)


def _last_line(lines: list[str]) -> str:
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no output)"])[-1].strip()


def _copy_private(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(source.read_bytes())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
