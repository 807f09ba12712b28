"""The schema: migrations apply once, in order, even when two processes race, and every SQL
statement the code runs is valid against it."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import uuid

import asyncpg
import pytest

from grantflow import store
from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store.migrations import available, migrate
from tests.conftest import Stack, fresh_database

pytestmark = pytest.mark.system


async def empty_database(postgres: EmbeddedPostgres) -> str:
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres.url.rsplit("/", 1)[0] + "/" + name


async def test_migrations_apply_once_and_a_second_run_applies_nothing(
    postgres: EmbeddedPostgres,
) -> None:
    url = await empty_database(postgres)
    conn = await asyncpg.connect(url)
    try:
        first = await migrate(conn)
        assert [m.version for m in first] == [m.version for m in available()]
        assert await migrate(conn) == []
        recorded = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
        assert [(r["version"], r["name"]) for r in recorded] == [
            (m.version, m.name) for m in available()
        ]
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_apply_each_migration_once(
    postgres: EmbeddedPostgres,
) -> None:
    url = await empty_database(postgres)
    conns = [await asyncpg.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(available())]
    finally:
        for conn in conns:
            await conn.close()


def statements() -> list[tuple[str, str]]:
    found = []
    for module in pkgutil.iter_modules(store.__path__):
        loaded = importlib.import_module(f"grantflow.store.{module.name}")
        found += [
            (f"{module.name}.{name}", value)
            for name, value in vars(loaded).items()
            if name.endswith("_SQL") and isinstance(value, str)
        ]
    return found


def test_the_store_has_statements_to_check() -> None:
    names = {name.split(".")[0] for name, _ in statements()}
    assert {"application", "audit", "programme", "users", "migrations"} <= names


@pytest.mark.parametrize(("name", "sql"), statements(), ids=[n for n, _ in statements()])
async def test_every_statement_the_code_runs_is_valid_against_the_schema(
    stack: Stack, name: str, sql: str
) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.prepare(sql)  # parses, resolves every table, column and parameter type
    finally:
        await conn.close()


async def test_the_audit_trail_cannot_be_rewritten(postgres: EmbeddedPostgres) -> None:
    url = await fresh_database(postgres.url, f"audit_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO audit_events (event_key, workflow_id, kind, at) "
            "VALUES ('wf:1', 'wf', 'submitted', now())"
        )
        for statement in ("UPDATE audit_events SET kind = 'forged'", "DELETE FROM audit_events"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT kind FROM audit_events") == "submitted"
    finally:
        await conn.close()
