"""The admins' search: applications by programme, stage, institution, specialty, overdue and
flagged, keyset-paged newest first, with counts."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from grantflow.store import Db
from grantflow.store.application import decode_cursor, encode_cursor
from schemas.admin import AdminApplication, AdminApplicationPage
from schemas.common import Stage

# Each filter that is set adds its condition, so that every combination of filters is its own
# statement with the plan that suits it (a catch-all `$1 IS NULL OR …` statement gets one
# generic plan for all of them, and at scale it reads the whole table). `{}` is the number of
# the parameter that carries the filter's value: only parameter numbers are formatted in,
# never values.
_PROGRAMME = "a.programme_id = ${}::uuid"
_INSTITUTION = "a.institution_id = ${}::text"
_SPECIALTY = "a.specialty = ${}::text"
_STAGES = "a.stage = ANY (${}::text[])"
_FLAGGED = "a.flag_reason IS NOT NULL"
# Overdue: an applicant's deadline, an open review task's, or a report still not in; the
# earliest of them is kept on the application in the same transaction as each change
# (migration 0030), and the overdue applications, with their stage and submission time, are
# one range of an index: the page and its count read no table row but the page's own.
_OVERDUE = "a.overdue_from < now()"
# The page's rows come in the same statement, each beside the counts (one row of counts alone,
# its columns null, when nothing is picked): one round trip, and every row is overdue by the
# same now() that picked it.
_OVERDUE_STATEMENT = """
WITH m AS MATERIALIZED (SELECT a.id, a.stage, a.submitted_at FROM applications a
                        WHERE {where}),
     counts AS (SELECT a.stage, count(*)::int AS n FROM m a GROUP BY a.stage),
     picked AS (SELECT a.id FROM m a WHERE {picked}
                ORDER BY a.submitted_at DESC, a.id DESC LIMIT ${limit}::int)
SELECT c.counts, a.id, a.programme_id, a.content ->> 'title' AS title, a.institution_id,
       a.specialty, a.stage, a.requested_rub, a.approved_rub, a.review_score, a.deadline,
       a.flag_reason, a.submitted_at, a.updated_at, true AS overdue
FROM (SELECT (SELECT coalesce(jsonb_object_agg(stage, n), '{{}}') FROM counts)::text AS counts)
     AS c
LEFT JOIN (picked JOIN applications a ON a.id = picked.id) ON true
ORDER BY a.submitted_at DESC, a.id DESC"""
_AFTER = "(a.submitted_at, a.id) < (${}::timestamptz, ${}::uuid)"
_PAGE_SELECT = """
SELECT a.id, a.programme_id, a.content ->> 'title' AS title, a.institution_id, a.specialty,
       a.stage, a.requested_rub, a.approved_rub, a.review_score, a.deadline, a.flag_reason,
       a.submitted_at, a.updated_at,
       coalesce(a.overdue_from < now(), false) AS overdue
FROM applications a
WHERE """
_PAGE_ORDER = "\nORDER BY a.submitted_at DESC, a.id DESC\nLIMIT ${}::int"
_COUNTS_SELECT = "SELECT a.stage, count(*)::int AS n FROM applications a\nWHERE "
_COUNTS_GROUP = "\nGROUP BY a.stage"
# With no filter but the programme (and the stage, which counts ignore), the counts come from
# the counters migration 0010 keeps in step with every stage change: at most one row per
# programme and stage, whatever the table's size. A stage whose counter is back at 0 is left
# out, as the GROUP BY above leaves it out.
_KEPT_COUNTS_SELECT = "SELECT c.stage, sum(c.n)::int AS n FROM application_stage_counts c\nWHERE "
_KEPT_COUNTS_PROGRAMME = "c.programme_id = $1::uuid"
_KEPT_COUNTS_GROUP = "\nGROUP BY c.stage\nHAVING sum(c.n) > 0"


@dataclass(frozen=True)
class Filters:
    """The admins' filters; None (or False) filters nothing."""

    programme_id: uuid.UUID | None = None
    stages: tuple[Stage, ...] = ()
    institution_id: str | None = None
    specialty: str | None = None
    overdue: bool = False
    flagged: bool = False

    def where(self, *, stages: bool = True) -> tuple[str, list[object]]:
        """The conditions and their arguments (the stage filter only when `stages`)."""
        conditions: list[str] = []
        args: list[object] = []
        valued: list[tuple[str, object]] = [
            (_PROGRAMME, self.programme_id),
            (_INSTITUTION, self.institution_id),
            (_SPECIALTY, self.specialty),
            (_STAGES, [s.value for s in self.stages] if stages and self.stages else None),
        ]
        for condition, value in valued:
            if value is not None:
                args.append(value)
                conditions.append(condition.format(len(args)))
        conditions += [_FLAGGED] if self.flagged else []
        conditions += [_OVERDUE] if self.overdue else []
        return "\n  AND ".join(conditions or ["true"]), args


def page_query(
    filters: Filters, after: tuple[object, object] | None, limit: int
) -> tuple[str, list[object]]:
    """The page's statement and arguments: newest first, after the row `after` (if any)."""
    where, args = filters.where()
    if after is not None:
        where += "\n  AND " + _AFTER.format(len(args) + 1, len(args) + 2)
        args += list(after)
    args.append(limit)
    return _PAGE_SELECT + where + _PAGE_ORDER.format(len(args)), args


def overdue_query(
    filters: Filters, after: tuple[object, object] | None, limit: int
) -> tuple[str, list[object]]:
    """With the overdue filter, the page and the counts in one statement: thousands may be
    overdue, and they are found (from the index of overdue_from, with stage and submitted_at,
    without reading the table) once for both. Each row carries the counts; when the page is
    empty, one row carries them alone, its other columns null."""
    where, args = filters.where(stages=False)
    picked = "true"
    if filters.stages:
        args.append([s.value for s in filters.stages])
        picked = _STAGES.format(len(args))
    if after is not None:
        picked += "\n  AND " + _AFTER.format(len(args) + 1, len(args) + 2)
        args += list(after)
    args.append(limit)
    return _OVERDUE_STATEMENT.format(where=where, picked=picked, limit=len(args)), args


def counts_query(filters: Filters) -> tuple[str, list[object]]:
    """Everything the filters match, by stage; the stage filter left out, so that the counts
    show where the rest are."""
    if filters == Filters(programme_id=filters.programme_id, stages=filters.stages):
        if filters.programme_id is None:
            return _KEPT_COUNTS_SELECT + "true" + _KEPT_COUNTS_GROUP, []
        return _KEPT_COUNTS_SELECT + _KEPT_COUNTS_PROGRAMME + _KEPT_COUNTS_GROUP, [
            filters.programme_id
        ]
    where, args = filters.where(stages=False)
    return _COUNTS_SELECT + where + _COUNTS_GROUP, args


_EVERY = Filters(uuid.UUID(int=0), (Stage.screening,), "i", "s", overdue=True, flagged=True)
# Every filter at once: tests/test_migrations.py prepares it, which checks every fragment.
EVERY_FILTER_PAGE_SQL = page_query(_EVERY, (None, None), 1)[0]
EVERY_FILTER_COUNTS_SQL = counts_query(_EVERY)[0]
EVERY_FILTER_OVERDUE_SQL = overdue_query(_EVERY, (None, None), 1)[0]
KEPT_COUNTS_SQL = counts_query(Filters(uuid.UUID(int=0)))[0]


async def page(db: Db, filters: Filters, *, limit: int, cursor: str | None) -> AdminApplicationPage:
    """One page and the counts. Raises ValueError for a cursor this module did not make."""
    after = decode_cursor(cursor) if cursor else None
    if filters.overdue:
        sql, args = overdue_query(filters, after, limit + 1)
        found = await db.fetch(sql, *args)  # one row at least, with the counts
        counts: dict[str, int] = json.loads(found[0]["counts"])
        rows = [r for r in found if r["id"] is not None]
    else:
        sql, args = page_query(filters, after, limit + 1)
        rows = await db.fetch(sql, *args)
        sql, args = counts_query(filters)
        counts = {r["stage"]: r["n"] for r in await db.fetch(sql, *args)}
    stages = {s.value for s in filters.stages}
    items = [_item(r) for r in rows[:limit]]
    more = len(rows) > limit
    return AdminApplicationPage(
        items=items,
        next_cursor=encode_cursor(items[-1].submitted_at, items[-1].id) if more else None,
        total=sum(n for s, n in counts.items() if not stages or s in stages),
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
