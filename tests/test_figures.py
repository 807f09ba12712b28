"""Programme figures read the stage counters a trigger keeps and indexes alone: after
applications come, move between stages, are approved and leave, and after the ledger moves
money, they say what a direct count of the tables says."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import figures
from tests.support import fresh_database

pytestmark = pytest.mark.system

# The figures as the tables say them, counted directly.
DIRECT_STAGES_SQL = """
SELECT stage, count(*)::int AS n FROM applications WHERE programme_id = $1 GROUP BY stage"""
DIRECT_INSTITUTIONS_SQL = """
SELECT a.institution_id, count(*)::int AS applications,
       count(*) FILTER (WHERE a.approved_rub IS NOT NULL)::int AS approved,
       coalesce(sum(a.requested_rub), 0)::bigint AS requested_rub,
       coalesce(sum(a.approved_rub), 0)::bigint AS approved_rub
FROM applications a WHERE a.programme_id = $1
GROUP BY a.institution_id ORDER BY approved_rub DESC, a.institution_id"""
DIRECT_MONEY_SQL = """
SELECT coalesce(sum(CASE kind WHEN 'reserve' THEN amount_rub
                              WHEN 'release' THEN -amount_rub ELSE 0 END), 0)::bigint AS reserved,
       coalesce(sum(amount_rub) FILTER (WHERE kind = 'disburse'), 0)::bigint AS disbursed
FROM ledger_entries WHERE programme_id = $1"""
BUDGET = 10**12


class Portfolio:
    """Two programmes, three institutions (and applications from none), written as the
    activities write them."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.admin = uuid.uuid4()
        self.programmes = [uuid.uuid4(), uuid.uuid4()]
        self.apps: list[uuid.UUID] = []

    async def setup(self) -> None:
        await self.conn.executemany(
            "INSERT INTO institutions (id, name, organisation_type) VALUES ($1, $1, 'clinic')",
            [("inst-a",), ("inst-b",), ("inst-c",)],
        )
        await self.conn.execute(
            "INSERT INTO users (id, name, role, token_hash) VALUES ($1, 'admin', 'admin', $2)",
            self.admin,
            self.admin.bytes,
        )
        for n, programme in enumerate(self.programmes):
            await self.conn.execute(
                "INSERT INTO programmes (id, name, budget_rub, max_grant_rub, organisation_types,"
                " specialties, intake_opens, intake_closes, complex_share_limit,"
                " complex_annual_cap_rub, params, created_by)"
                " VALUES ($1, $2, $3, 10, '{clinic}', '{s}', now(), now(), 0.1, 10, '{}', $4)",
                programme,
                f"programme {n}",
                BUDGET,
                self.admin,
            )

    async def submit(self, programme: uuid.UUID, institution: str | None, rub: int) -> uuid.UUID:
        app = uuid.uuid4()
        await self.conn.execute(
            "INSERT INTO applications (id, programme_id, applicant_id, institution_id,"
            " workflow_id, specialty, requested_rub, content, stage, stage_seq, request_digest,"
            " submitted_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, 's', $6, '{}', 'submitted', 1, 'd', $7, $7)",
            app,
            programme,
            self.admin,
            institution,
            f"application-{app}",
            rub,
            datetime.now(UTC),
        )
        self.apps.append(app)
        return app

    async def move(self, app: uuid.UUID, stage: str, approved_rub: int | None = None) -> None:
        await self.conn.execute(
            "UPDATE applications SET stage = $2, approved_rub = coalesce($3, approved_rub)"
            " WHERE id = $1",
            app,
            stage,
            approved_rub,
        )

    async def ledger(self, app: uuid.UUID, kind: str, rub: int) -> None:
        programme = await self.conn.fetchval(
            "SELECT programme_id FROM applications WHERE id = $1", app
        )
        await self.conn.execute(
            "INSERT INTO ledger_entries (key, programme_id, application_id, kind, amount_rub,"
            " reason, at) VALUES ($1, $2, $3, $4, $5, 'test', now())",
            f"{app}:{kind}:{uuid.uuid4()}",
            programme,
            app,
            kind,
            rub,
        )

    async def direct(self, programme: uuid.UUID) -> dict[str, Any]:
        stages = {r["stage"]: r["n"] for r in await self.conn.fetch(DIRECT_STAGES_SQL, programme)}
        institutions = [dict(r) for r in await self.conn.fetch(DIRECT_INSTITUTIONS_SQL, programme)]
        money = await self.conn.fetchrow(DIRECT_MONEY_SQL, programme)
        assert money is not None
        return {
            "applications": sum(stages.values()),
            "by_stage": stages,
            "approved": sum(i["approved"] for i in institutions),
            "requested_rub": sum(i["requested_rub"] for i in institutions),
            "approved_rub": sum(i["approved_rub"] for i in institutions),
            "reserved_rub": money["reserved"],
            "disbursed_rub": money["disbursed"],
            "remaining_rub": BUDGET - money["reserved"],
            "by_institution": institutions,
        }

    async def agree(self) -> None:
        """Each programme's figures, as read, equal the direct count."""
        for programme in self.programmes:
            found = await figures.programme(self.conn, programme)
            assert found is not None
            read = found.model_dump()
            expected = await self.direct(programme)
            assert {k: read[k] for k in expected} == expected


@pytest_asyncio.fixture(loop_scope="session")
async def portfolio(postgres: EmbeddedPostgres) -> AsyncIterator[Portfolio]:
    url = await fresh_database(postgres.url, f"figures_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(url)
    try:
        portfolio = Portfolio(conn)
        await portfolio.setup()
        yield portfolio
    finally:
        await conn.close()


async def test_figures_agree_with_a_direct_count_through_a_programmes_life(
    portfolio: Portfolio,
) -> None:
    first, second = portfolio.programmes
    empty = await figures.programme(portfolio.conn, first)
    assert empty is not None and empty.applications == 0
    assert empty.by_stage == {} and empty.by_institution == []
    assert empty.remaining_rub == BUDGET

    a1 = await portfolio.submit(first, "inst-a", 30_000_000)
    a2 = await portfolio.submit(first, "inst-a", 20_000_000)
    b1 = await portfolio.submit(first, "inst-b", 50_000_000)
    none = await portfolio.submit(first, None, 10_000_000)
    await portfolio.submit(second, "inst-c", 40_000_000)
    await portfolio.agree()

    for app in (a1, a2, b1, none):
        await portfolio.move(app, "under_review")
    await portfolio.move(a1, "approved", approved_rub=25_000_000)
    await portfolio.ledger(a1, "reserve", 25_000_000)
    await portfolio.move(b1, "approved", approved_rub=50_000_000)
    await portfolio.ledger(b1, "reserve", 50_000_000)
    await portfolio.move(a2, "rejected")
    await portfolio.agree()

    # The submitted counter is back at 0: the figures leave the stage out, as a count does.
    read = await figures.programme(portfolio.conn, first)
    assert read is not None and "submitted" not in read.by_stage
    assert [i.institution_id for i in read.by_institution] == ["inst-b", "inst-a", None]

    await portfolio.ledger(b1, "disburse", 25_000_000)
    await portfolio.move(a1, "withdrawn")
    await portfolio.ledger(a1, "release", 25_000_000)
    await portfolio.conn.execute("DELETE FROM applications WHERE id = $1", none)
    await portfolio.agree()
    read = await figures.programme(portfolio.conn, first)
    assert read is not None
    assert (read.applications, read.approved, read.reserved_rub, read.disbursed_rub) == (
        3,
        2,
        50_000_000,
        25_000_000,
    )
    assert read.approval_rate == round(2 / 3, 4)


async def test_no_figures_for_a_programme_that_does_not_exist(portfolio: Portfolio) -> None:
    assert await figures.programme(portfolio.conn, uuid.uuid4()) is None
