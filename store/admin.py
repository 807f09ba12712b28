"""The admins' search: applications by programme, stage, institution, specialty, overdue and
flagged, keyset-paged newest first, with counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from schemas.admin import AdminApplication, AdminApplicationPage
from schemas.common import Stage
from store import Db
from store.applications import decode_cursor, encode_cursor

# What every query of this module filters on: $1 programme, $2 institution, $3 specialty,
# $4 flagged only, $5 overdue only (NULL or false: no filter). Overdue is the union of three
# indexed sources, computed once as an array (an init plan) that the primary key looks up, so
# the filter and its count read only overdue rows instead of testing every application.
_FILTERS = """
WHERE ($1::uuid IS NULL OR a.programme_id = $1)
  AND ($2::text IS NULL OR a.institution_id = $2)
  AND ($3::text IS NULL OR a.specialty = $3)
  AND (NOT coalesce($4::boolean, false) OR a.flag_reason IS NOT NULL)
  AND (NOT coalesce($5::boolean, false) OR a.id = ANY (ARRAY(
        SELECT o.id FROM applications o WHERE o.deadline < now()
        UNION
        SELECT t.application_id FROM review_tasks t
        WHERE t.status IN ('offered', 'accepted') AND t.deadline < now()
        UNION
        SELECT r.application_id FROM reports r
        WHERE r.overdue AND r.status IN ('due', 'returned'))))"""
_PAGE_SELECT = """
SELECT a.id, a.programme_id, a.content ->> 'title' AS title, a.institution_id, a.specialty,
       a.stage, a.requested_rub, a.approved_rub, a.review_score, a.deadline, a.flag_reason,
       a.submitted_at, a.updated_at,
       (coalesce(a.deadline < now(), false)
        OR EXISTS (SELECT 1 FROM review_tasks t WHERE t.application_id = a.id
                   AND t.status IN ('offered', 'accepted') AND t.deadline < now())
        OR EXISTS (SELECT 1 FROM reports r WHERE r.application_id = a.id
                   AND r.overdue AND r.status IN ('due', 'returned'))) AS overdue
FROM applications a"""
_PAGE_ORDER = """
  AND ($6::text[] IS NULL OR a.stage = ANY ($6))
  AND ($7::timestamptz IS NULL OR (a.submitted_at, a.id) < ($7, $8::uuid))
ORDER BY a.submitted_at DESC, a.id DESC
LIMIT $9"""
_COUNTS_SELECT = "SELECT a.stage, count(*)::int AS n FROM applications a"
_COUNTS_GROUP = "\nGROUP BY a.stage"
# Composed of the constants above, never of values. One page, newest first; $6 stages (NULL:
# all), $7/$8 the last row of the previous page.
PAGE_SQL = _PAGE_SELECT + _FILTERS + _PAGE_ORDER
# Everything the filters match, by stage (the stage filter left out, so the counts show where
# the rest are).
COUNTS_SQL = _COUNTS_SELECT + _FILTERS + _COUNTS_GROUP


@dataclass(frozen=True)
class Filters:
    """The admins' filters; None (or False) filters nothing."""

    programme_id: uuid.UUID | None = None
    stages: tuple[Stage, ...] = ()
    institution_id: str | None = None
    specialty: str | None = None
    overdue: bool = False
    flagged: bool = False

    def args(self) -> tuple[object, ...]:
        return (self.programme_id, self.institution_id, self.specialty, self.flagged, self.overdue)


async def page(db: Db, filters: Filters, *, limit: int, cursor: str | None) -> AdminApplicationPage:
    """One page and the counts. Raises ValueError for a cursor this module did not make."""
    after_at, after_id = decode_cursor(cursor) if cursor else (None, None)
    stages = [s.value for s in filters.stages] or None
    rows = await db.fetch(PAGE_SQL, *filters.args(), stages, after_at, after_id, limit + 1)
    counts = {r["stage"]: r["n"] for r in await db.fetch(COUNTS_SQL, *filters.args())}
    items = [_item(r) for r in rows[:limit]]
    more = len(rows) > limit
    return AdminApplicationPage(
        items=items,
        next_cursor=encode_cursor(items[-1].submitted_at, items[-1].id) if more else None,
        total=sum(n for s, n in counts.items() if stages is None or s in stages),
        by_stage=counts,
    )


def _item(row: asyncpg.Record) -> AdminApplication:
    score: Decimal | None = row["review_score"]
    return AdminApplication(
        id=str(row["id"]),
        programme_id=str(row["programme_id"]),
        title=row["title"],
        institution_id=row["institution_id"],
        specialty=row["specialty"],
        stage=Stage(row["stage"]),
        requested_rub=row["requested_rub"],
        approved_rub=row["approved_rub"],
        review_score=None if score is None else float(score),
        deadline=row["deadline"],
        overdue=row["overdue"],
        flag_reason=row["flag_reason"],
        submitted_at=row["submitted_at"],
        updated_at=row["updated_at"],
    )
