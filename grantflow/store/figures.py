"""Programme figures: one pass over the programme's applications and its ledger."""

from __future__ import annotations

import uuid

from grantflow.store import Db
from schemas.figures import InstitutionFigures, ProgrammeFigures

BY_STAGE_SQL = """
SELECT stage, count(*)::int AS n FROM applications WHERE programme_id = $1 GROUP BY stage"""
BY_INSTITUTION_SQL = """
SELECT a.institution_id, count(*)::int AS applications,
       count(*) FILTER (WHERE a.approved_rub IS NOT NULL)::int AS approved,
       coalesce(sum(a.requested_rub), 0)::bigint AS requested_rub,
       coalesce(sum(a.approved_rub), 0)::bigint AS approved_rub
FROM applications a WHERE a.programme_id = $1
GROUP BY a.institution_id ORDER BY approved_rub DESC, a.institution_id"""
MONEY_SQL = """
SELECT p.budget_rub,
       coalesce(sum(CASE l.kind WHEN 'reserve' THEN l.amount_rub
                                WHEN 'release' THEN -l.amount_rub ELSE 0 END), 0)::bigint
           AS reserved,
       coalesce(sum(l.amount_rub) FILTER (WHERE l.kind = 'disburse'), 0)::bigint AS disbursed
FROM programmes p LEFT JOIN ledger_entries l ON l.programme_id = p.id
WHERE p.id = $1 GROUP BY p.budget_rub"""


async def programme(db: Db, programme_id: uuid.UUID) -> ProgrammeFigures | None:
    money = await db.fetchrow(MONEY_SQL, programme_id)
    if money is None:
        return None
    stages = {r["stage"]: r["n"] for r in await db.fetch(BY_STAGE_SQL, programme_id)}
    institutions = [
        InstitutionFigures.model_validate(dict(r))
        for r in await db.fetch(BY_INSTITUTION_SQL, programme_id)
    ]
    total = sum(stages.values())
    approved = sum(i.approved for i in institutions)
    return ProgrammeFigures(
        programme_id=str(programme_id),
        applications=total,
        by_stage=stages,
        approved=approved,
        approval_rate=round(approved / total, 4) if total else 0.0,
        requested_rub=sum(i.requested_rub for i in institutions),
        approved_rub=sum(i.approved_rub for i in institutions),
        reserved_rub=money["reserved"],
        disbursed_rub=money["disbursed"],
        remaining_rub=money["budget_rub"] - money["reserved"],
        budget_rub=money["budget_rub"],
        by_institution=institutions,
    )
