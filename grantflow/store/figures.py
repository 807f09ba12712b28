"""Programme figures: the programme's money, its applications by stage and by institution,
in one statement."""

from __future__ import annotations

import json
import uuid

from grantflow.store import Db
from schemas.figures import InstitutionFigures, ProgrammeFigures

# One round trip, each part read from an index alone (migration 0022): the ledger's amounts
# from ledger_programme_figures, the stages from the counters migration 0010 keeps (a stage
# whose counter is back at 0 is left out, as a count would leave it out), the institutions'
# sums from applications_programme_figures. The lists travel as JSON text, decoded once here.
FIGURES_SQL = """
SELECT p.budget_rub,
       coalesce(sum(CASE l.kind WHEN 'reserve' THEN l.amount_rub
                                WHEN 'release' THEN -l.amount_rub ELSE 0 END), 0)::bigint
           AS reserved,
       coalesce(sum(l.amount_rub) FILTER (WHERE l.kind = 'disburse'), 0)::bigint AS disbursed,
       (SELECT coalesce(json_object_agg(c.stage, c.n ORDER BY c.stage), '{}')
        FROM application_stage_counts c WHERE c.programme_id = p.id AND c.n > 0)::text
           AS by_stage,
       (SELECT coalesce(json_agg(i ORDER BY i.approved_rub DESC, i.institution_id), '[]')
        FROM (SELECT a.institution_id, count(*)::int AS applications,
                     count(a.approved_rub)::int AS approved,
                     coalesce(sum(a.requested_rub), 0)::bigint AS requested_rub,
                     coalesce(sum(a.approved_rub), 0)::bigint AS approved_rub
              FROM applications a WHERE a.programme_id = p.id
              GROUP BY a.institution_id) AS i)::text AS by_institution
FROM programmes p LEFT JOIN ledger_entries l ON l.programme_id = p.id
WHERE p.id = $1::uuid
GROUP BY p.id, p.budget_rub"""


async def programme(db: Db, programme_id: uuid.UUID) -> ProgrammeFigures | None:
    found = await db.fetchrow(FIGURES_SQL, programme_id)
    if found is None:
        return None
    stages: dict[str, int] = json.loads(found["by_stage"])
    institutions = [
        InstitutionFigures.model_validate(i) for i in json.loads(found["by_institution"])
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
        reserved_rub=found["reserved"],
        disbursed_rub=found["disbursed"],
        remaining_rub=found["budget_rub"] - found["reserved"],
        budget_rub=found["budget_rub"],
        by_institution=institutions,
    )
