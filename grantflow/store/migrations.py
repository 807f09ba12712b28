"""Forward-only numbered migrations, applied in order, each once, under an advisory lock."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from grantflow import migrations as _migrations_package
from grantflow.store import Conn, in_transaction

MIGRATIONS_DIR = Path(_migrations_package.__file__).resolve().parent
LOCK_KEY = 7_715_001  # any constant: serialises concurrent `grantflow migrate` runs

CREATE_LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
APPLIED_SQL = "SELECT version FROM schema_migrations"
RECORD_SQL = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version in {directory}")
    return found


async def migrate(conn: Conn, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every migration not applied yet; returns those applied now. Safe to run twice."""
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(CREATE_LEDGER_SQL)
        done = {r["version"] for r in await conn.fetch(APPLIED_SQL)}
        for migration in available(directory):
            if migration.version in done:
                continue
            await in_transaction(conn, functools.partial(_apply, migration))
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return applied_now


async def _apply(migration: Migration, conn: Conn) -> None:
    await conn.execute(migration.path.read_text())
    await conn.execute(RECORD_SQL, migration.version, migration.name)
