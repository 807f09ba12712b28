"""Programme figures read the stage counters a trigger keeps and indexes alone: after
applications come, move between stages, are approved and leave, and after the ledger moves
money, they say what a direct count of the tables says. The admins' overdue list reads the
overdue time kept on each application: after deadlines, review tasks and reports change, it
lists and counts what the tables say is overdue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import admin, figures, review
from tests.support import eventually, fresh_database

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
# Overdue as the three sources say it: the application's own deadline, an open review task's,
# an open report marked overdue.
DIRECT_OVERDUE_SQL = """
SELECT a.id, a.stage FROM applications a
WHERE coalesce(a.deadline < now(), false)
   OR EXISTS (SELECT 1 FROM review_tasks t WHERE t.application_id = a.id
              AND t.status IN ('offered', 'accepted') AND t.deadline < now())
   OR EXISTS (SELECT 1 FROM reports r WHERE r.application_id = a.id
              AND r.overdue AND r.status IN ('due', 'returned'))
ORDER BY a.submitted_at DESC, a.id DESC"""
BUDGET = 10**12
HOUR = timedelta(hours=1)


class Portfolio:
    """Two programmes, three institutions (and applications from none), written as the
    activities write them."""

    def __init__(self, conn: asyncpg.Connection, url: str) -> None:
        self.conn = conn
        self.url = url
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
            " VALUES ($1, $2, $3, $4, $5, 's', $6, '{\"title\": \"t\"}', 'submitted', 1, 'd',"
            " $7, $7)",
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

    async def deadline(self, app: uuid.UUID, stage: str, at: datetime | None) -> None:
        """A stage change that sets or clears the applicant's deadline."""
        await self.conn.execute(
            "UPDATE applications SET stage = $2, deadline = $3 WHERE id = $1", app, stage, at
        )

    async def offer(self, app: uuid.UUID, accept_by: datetime) -> uuid.UUID:
        """A review task offered to a new reviewer, as the review's activity writes it."""
        reviewer, task = uuid.uuid4(), uuid.uuid4()
        await self.conn.execute(
            "INSERT INTO users (id, name, role, specialty, token_hash)"
            " VALUES ($1, 'reviewer', 'reviewer', 's', $2)",
            reviewer,
            reviewer.bytes,
        )
        programme = await self.conn.fetchval(
            "SELECT programme_id FROM applications WHERE id = $1", app
        )
        now = datetime.now(UTC)
        await self.conn.execute(
            review.INSERT_TASK_SQL, task, app, programme, reviewer, f"review-{app}", 1, now,
            accept_by, None,
        )  # fmt: skip
        return task

    async def task(self, task: uuid.UUID, status: str, deadline: datetime | None) -> None:
        await self.conn.execute(
            "UPDATE review_tasks SET status = $2, deadline = $3, version = version + 1"
            " WHERE id = $1",
            task,
            status,
            deadline,
        )

    async def report(self, app: uuid.UUID, seq: int, status: str, overdue: bool) -> None:
        """The agreement (once) and report `seq`, inserted or changed."""
        now = datetime.now(UTC)
        await self.conn.execute(
            "INSERT INTO agreements (application_id, programme_id, amount_rub, status, version,"
            " offered_at, accept_by, accepted_at, updated_at)"
            " SELECT id, programme_id, 1, 'accepted', 1, $2, $2, $2, $2 FROM applications"
            " WHERE id = $1 ON CONFLICT DO NOTHING",
            app,
            now,
        )
        await self.conn.execute(
            "INSERT INTO reports (application_id, seq, due_at, status, overdue, kind)"
            " VALUES ($1, $2, $3, $4, $5, 'progress') ON CONFLICT (application_id, seq)"
            " DO UPDATE SET status = EXCLUDED.status, overdue = EXCLUDED.overdue",
            app,
            seq,
            now,
            status,
            overdue,
        )

    async def overdue_agrees(self) -> list[uuid.UUID]:
        """The overdue list (newest first, its counts by stage) and every row's overdue mark in
        the unfiltered list equal the direct reading; returns the overdue applications."""
        rows = await self.conn.fetch(DIRECT_OVERDUE_SQL)
        expected = [r["id"] for r in rows]
        by_stage: dict[str, int] = {}
        for r in rows:
            by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + 1
        found = await admin.page(self.conn, admin.Filters(overdue=True), limit=50, cursor=None)
        assert [uuid.UUID(i.id) for i in found.items] == expected
        assert all(i.overdue for i in found.items)
        assert (found.by_stage, found.total) == (by_stage, len(expected))
        every = await admin.page(self.conn, admin.Filters(), limit=50, cursor=None)
        assert {uuid.UUID(i.id): i.overdue for i in every.items} == {
            app: app in expected for app in self.apps
        }
        return expected

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
        portfolio = Portfolio(conn, url)
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


async def test_the_overdue_list_follows_deadlines_review_tasks_and_reports(
    portfolio: Portfolio,
) -> None:
    first = portfolio.programmes[0]
    now = datetime.now(UTC)
    own, reviewed, reported, late = [
        await portfolio.submit(first, "inst-a", 10_000_000) for _ in range(4)
    ]
    assert await portfolio.overdue_agrees() == []

    # The applicant's deadline to revise passes; another's is next week.
    await portfolio.deadline(own, "revision_requested", now - HOUR)
    await portfolio.deadline(late, "revision_requested", now + 7 * 24 * HOUR)
    assert await portfolio.overdue_agrees() == [own]

    # A reviewer lets an offer lapse unanswered; another has a week.
    lapsed = await portfolio.offer(reviewed, now - HOUR)
    waiting = await portfolio.offer(reviewed, now + 7 * 24 * HOUR)
    assert await portfolio.overdue_agrees() == [reviewed, own]
    # The late one accepts with a month to review: nothing of that application is late now.
    await portfolio.task(lapsed, "accepted", now + 30 * 24 * HOUR)
    assert await portfolio.overdue_agrees() == [own]
    # The other's review falls overdue, then the application leaves review.
    await portfolio.task(waiting, "accepted", now - HOUR)
    assert await portfolio.overdue_agrees() == [reviewed, own]
    await portfolio.conn.execute(review.CANCEL_OPEN_TASKS_SQL, reviewed, 99, now)
    assert await portfolio.overdue_agrees() == [own]

    # A report falls due unsent, is sent, is returned for changes, then accepted.
    await portfolio.report(reported, 1, "due", overdue=False)
    assert await portfolio.overdue_agrees() == [own]
    await portfolio.report(reported, 1, "due", overdue=True)
    assert await portfolio.overdue_agrees() == [reported, own]
    await portfolio.report(reported, 1, "submitted", overdue=True)
    assert await portfolio.overdue_agrees() == [own]
    await portfolio.report(reported, 1, "returned", overdue=True)
    assert await portfolio.overdue_agrees() == [reported, own]
    await portfolio.report(reported, 1, "accepted", overdue=True)

    # The applicant revised: the deadline is gone; the other's has passed meanwhile.
    await portfolio.deadline(own, "under_review", None)
    await portfolio.deadline(late, "revision_requested", now - HOUR)
    assert await portfolio.overdue_agrees() == [late]


async def test_a_task_and_a_report_changed_at_once_leave_the_overdue_time_right(
    portfolio: Portfolio,
) -> None:
    """Two transactions change two rows of one application at the same moment: a review closes
    its task while the report's overdue mark clears. Each reads the other's change once it is
    committed, so the application is no longer overdue (computed from the second one's
    snapshot alone, the closed task would still make it overdue)."""
    now = datetime.now(UTC)
    app = await portfolio.submit(portfolio.programmes[1], "inst-c", 10_000_000)
    task = await portfolio.offer(app, now - HOUR)
    await portfolio.report(app, 1, "due", overdue=True)
    assert app in await portfolio.overdue_agrees()

    closing = await asyncpg.connect(portfolio.url)
    clearing = await asyncpg.connect(portfolio.url)
    try:
        first = closing.transaction()
        await first.start()
        await closing.execute(
            "UPDATE review_tasks SET status = 'submitted', deadline = NULL WHERE id = $1", task
        )
        second = clearing.transaction()
        await second.start()
        waiting_pid = clearing.get_server_pid()
        cleared = asyncio.ensure_future(
            clearing.execute(
                "UPDATE reports SET status = 'accepted' WHERE application_id = $1", app
            )
        )

        async def waits_or_done() -> bool:
            """The clearing waits for the closing's lock on the application (or, were there
            none, has read its snapshot and is done)."""
            waits = await portfolio.conn.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                waiting_pid,
            )
            return bool(waits) or cleared.done()

        await eventually(waits_or_done, interval=0.01)
        await first.commit()
        await cleared
        await second.commit()
    finally:
        await closing.close()
        await clearing.close()
    assert app not in await portfolio.overdue_agrees()
