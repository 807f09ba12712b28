"""What the operators' dashboard counts, per programme: each statement reads only a few rows
whatever the number of applications (the stage counters of migration 0010, the partial indexes
of open review tasks, open overdue reports and flagged applications), except the ledger's sum,
one index-ordered pass over the money entries, which are a fraction of the applications."""

from __future__ import annotations

from dataclasses import dataclass, field

from grantflow.store import Conn

STAGES_SQL = """
SELECT programme_id::text AS programme, stage, n FROM application_stage_counts WHERE n > 0"""
PROGRAMMES_SQL = """
SELECT p.id::text AS programme, p.name,
       p.budget_rub - coalesce(l.committed, 0) AS remaining_rub
FROM programmes p
LEFT JOIN (SELECT programme_id,
                  sum(CASE kind WHEN 'reserve' THEN amount_rub
                                WHEN 'release' THEN -amount_rub ELSE 0 END)::bigint AS committed
           FROM ledger_entries GROUP BY programme_id) l ON l.programme_id = p.id"""
OVERDUE_REVIEWS_SQL = """
SELECT programme_id::text AS programme, count(*)::int AS n FROM review_tasks
WHERE status IN ('offered', 'accepted') AND deadline < now() GROUP BY programme_id"""
OVERDUE_REPORTS_SQL = """
SELECT a.programme_id::text AS programme, count(*)::int AS n
FROM reports r JOIN applications a ON a.id = r.application_id
WHERE r.overdue AND r.status IN ('due', 'returned') GROUP BY a.programme_id"""
FLAGGED_SQL = """
SELECT programme_id::text AS programme, count(*)::int AS n FROM applications
WHERE flag_reason IS NOT NULL GROUP BY programme_id"""


@dataclass(frozen=True)
class Gauges:
    """One reading of every domain gauge; a programme absent from a dict has zero there."""

    names: dict[str, str] = field(default_factory=dict)
    remaining_rub: dict[str, int] = field(default_factory=dict)
    by_stage: dict[tuple[str, str], int] = field(default_factory=dict)
    overdue_reviews: dict[str, int] = field(default_factory=dict)
    overdue_reports: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)


async def read(conn: Conn) -> Gauges:
    """Every gauge, in one read-only transaction so that they agree with each other."""
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        programmes = await conn.fetch(PROGRAMMES_SQL)
        stages = await conn.fetch(STAGES_SQL)
        reviews = await conn.fetch(OVERDUE_REVIEWS_SQL)
        reports = await conn.fetch(OVERDUE_REPORTS_SQL)
        flagged = await conn.fetch(FLAGGED_SQL)
    return Gauges(
        names={r["programme"]: r["name"] for r in programmes},
        remaining_rub={r["programme"]: r["remaining_rub"] for r in programmes},
        by_stage={(r["programme"], r["stage"]): r["n"] for r in stages},
        overdue_reviews={r["programme"]: r["n"] for r in reviews},
        overdue_reports={r["programme"]: r["n"] for r in reports},
        flagged={r["programme"]: r["n"] for r in flagged},
    )
