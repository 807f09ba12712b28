"""What the admins' dashboard reads: what needs attention now, and a programme's figures for
its pictures. Every statement reads an index or the stage counters (migration 0010), never the
whole applications table: the dashboard is the page admins open most."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from grantflow.store import Db

# Counts of applications, so that each figure is what its link's filtered list counts; each from
# its partial index (reviewed or deferred, waiting for a council: from the stage counters), all
# in one round trip.
ATTENTION_SQL = """
SELECT (SELECT count(*) FROM applications WHERE flag_reason IS NOT NULL)::int AS flagged,
       (SELECT count(DISTINCT t.application_id) FROM review_tasks t
        WHERE t.status IN ('offered', 'accepted') AND t.deadline < now())::int
           AS overdue_reviews,
       (SELECT count(DISTINCT r.application_id) FROM reports r
        WHERE r.overdue AND r.status IN ('due', 'returned'))::int AS overdue_reports,
       (SELECT coalesce(sum(n), 0) FROM application_stage_counts
        WHERE stage IN ('reviewed', 'deferred'))::int AS waiting_council"""
ESCALATED_SITES_SQL = """
SELECT s.id, s.application_id, s.clinic_id, coalesce(i.name, s.clinic_id) AS clinic,
       s.status, s.report_by, s.updated_at, count(*) OVER ()::int AS total
FROM pilot_sites s LEFT JOIN institutions i ON i.id = s.clinic_id
WHERE s.escalated AND s.status NOT IN ('completed', 'cancelled', 'declined')
ORDER BY s.updated_at LIMIT $1::int"""

STAGE_COUNTS_SQL = """
SELECT stage, n FROM application_stage_counts WHERE programme_id = $1::uuid AND n > 0"""
# The first and the last entry by the index on (programme_id, id): an append-only ledger's ids
# follow its times closely enough to choose the periods by.
LEDGER_SPAN_SQL = """
SELECT (SELECT at FROM ledger_entries WHERE programme_id = $1::uuid ORDER BY id LIMIT 1) AS first,
       (SELECT at FROM ledger_entries WHERE programme_id = $1::uuid ORDER BY id DESC LIMIT 1)
           AS last"""
# Each bucket's movements; the service adds them up into the running totals.
LEDGER_BUCKETS_SQL = """
SELECT date_trunc($2::text, l.at) AS at,
       coalesce(sum(l.amount_rub) FILTER (WHERE l.kind = 'reserve'), 0)::bigint AS reserved,
       coalesce(sum(l.amount_rub) FILTER (WHERE l.kind = 'release'), 0)::bigint AS released,
       coalesce(sum(l.amount_rub) FILTER (WHERE l.kind = 'disburse'), 0)::bigint AS disbursed
FROM ledger_entries l WHERE l.programme_id = $1::uuid
GROUP BY 1 ORDER BY 1"""
PILOT_SITES_SQL = """
SELECT s.clinic_id, coalesce(i.name, s.clinic_id) AS clinic, s.status, count(*)::int AS n
FROM pilot_sites s LEFT JOIN institutions i ON i.id = s.clinic_id
WHERE s.programme_id = $1::uuid
GROUP BY s.clinic_id, i.name, s.status ORDER BY s.clinic_id, s.status"""
OUTCOMES_SQL = """
SELECT outcome, count(*)::int AS n FROM applications
WHERE programme_id = $1::uuid AND outcome IS NOT NULL GROUP BY outcome"""
BUDGET_SQL = "SELECT budget_rub FROM programmes WHERE id = $1::uuid"
REVIEWERS_SQL = """
SELECT id, name, specialty FROM users
WHERE role = 'reviewer' AND specialty = $1::text
ORDER BY name, id LIMIT $2::int"""


async def attention(db: Db) -> dict[str, int]:
    """How many applications are flagged, have an overdue review or report, or wait for a
    council."""
    row = await db.fetchrow(ATTENTION_SQL)
    assert row is not None  # one row, always
    return dict(row)


async def escalated_sites(db: Db, limit: int) -> list[asyncpg.Record]:
    """Open sites escalated to admins, the longest waiting first, each row with the total."""
    return list(await db.fetch(ESCALATED_SITES_SQL, limit))


async def stage_counts(db: Db, programme_id: uuid.UUID) -> dict[str, int]:
    return {r["stage"]: r["n"] for r in await db.fetch(STAGE_COUNTS_SQL, programme_id)}


async def ledger_span(db: Db, programme_id: uuid.UUID) -> tuple[datetime | None, datetime | None]:
    row = await db.fetchrow(LEDGER_SPAN_SQL, programme_id)
    return (row["first"], row["last"]) if row else (None, None)


async def ledger_buckets(db: Db, programme_id: uuid.UUID, unit: str) -> list[asyncpg.Record]:
    """The ledger's movements per `unit` ('minute', 'hour', 'day', 'week'), oldest first."""
    return list(await db.fetch(LEDGER_BUCKETS_SQL, programme_id, unit))


async def pilot_sites(db: Db, programme_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(PILOT_SITES_SQL, programme_id))


async def outcomes(db: Db, programme_id: uuid.UUID) -> dict[str, int]:
    return {r["outcome"]: r["n"] for r in await db.fetch(OUTCOMES_SQL, programme_id)}


async def budget(db: Db, programme_id: uuid.UUID) -> int | None:
    found: int | None = await db.fetchval(BUDGET_SQL, programme_id)
    return found


async def reviewers(db: Db, specialty: str, limit: int) -> list[asyncpg.Record]:
    """Reviewers of the specialty, by name."""
    return list(await db.fetch(REVIEWERS_SQL, specialty, limit))
