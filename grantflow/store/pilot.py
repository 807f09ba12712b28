"""Pilots and their sites: the read model of the pilot and site workflows, the choice of the
pilot's evaluator, and the programme's outcome figures."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from grantflow.store import Conn, Db, audit

# The review stage's matching: same specialty, no conflict of interest, least loaded first, and
# never someone who was offered the application for review (so the evaluator is independent).
from grantflow.store.review import LOCK_SPECIALTY_SQL, conflicted_institutions, pick_expert
from schemas.common import Actor
from schemas.pilot import EvaluatorRequest, PilotState, PilotSummary, SiteState

# version makes a retried or late write a no-op instead of a step back.
UPSERT_SITE_SQL = """
INSERT INTO pilot_sites (id, application_id, programme_id, seq, round, clinic_id, status, version,
                         starts_at, ends_at, report_by, metrics, measurements, reason, escalated,
                         updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (id) DO UPDATE
SET status = $7, version = $8, measurements = $13, reason = $14, escalated = $15, updated_at = $16
WHERE pilot_sites.version < $8"""
UPSERT_PILOT_SQL = """
INSERT INTO pilots (application_id, programme_id, status, round, version, evaluator_id, evaluation,
                    decision, flag_reason, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (application_id) DO UPDATE
SET status = $3, round = $4, version = $5, evaluator_id = $6, evaluation = $7, decision = $8,
    flag_reason = $9, updated_at = $10
WHERE pilots.version < $5"""
# Each with the change's audit event (`audit.event_args`): one statement, atomic on its own.
UPSERT_SITE_WITH_EVENT_SQL = audit.with_event(UPSERT_SITE_SQL, 17)
UPSERT_PILOT_WITH_EVENT_SQL = audit.with_event(UPSERT_PILOT_SQL, 11)
COORDINATORS_SQL = "SELECT id FROM users WHERE role = 'coordinator' AND institution_id = $1"
CLINIC_SQL = "SELECT organisation_type FROM institutions WHERE id = $1"
_SITE_COLUMNS = """
SELECT s.id, s.application_id, a.content ->> 'title' AS title, s.seq, s.round, s.clinic_id,
       s.status, s.starts_at, s.ends_at, s.report_by, s.metrics, s.measurements, s.reason,
       s.escalated
FROM pilot_sites s JOIN applications a ON a.id = s.application_id"""
CLINIC_SITES_SQL = (
    _SITE_COLUMNS
    + """
WHERE s.clinic_id = $1 ORDER BY s.starts_at DESC, s.id LIMIT $2"""
)
APPLICATION_SITES_SQL = _SITE_COLUMNS + "\nWHERE s.application_id = $1 ORDER BY s.seq"
SITE_SQL = _SITE_COLUMNS + "\nWHERE s.id = $1"
PILOT_SQL = """
SELECT application_id, status, round, evaluator_id, evaluation, decision, flag_reason
FROM pilots WHERE application_id = $1"""
EVALUATOR_PILOTS_SQL = """
SELECT application_id FROM pilots WHERE evaluator_id = $1 AND status = 'evaluating'
ORDER BY updated_at, application_id
LIMIT $2"""
PROJECTS_SQL = """
SELECT count(*) FILTER (WHERE g.status IN ('accepted', 'completed', 'stopped')) AS projects,
       count(*) FILTER (WHERE a.outcome IS NOT NULL) AS closed,
       count(*) FILTER (WHERE a.outcome = 'implemented') AS implemented
FROM agreements g JOIN applications a ON a.id = g.application_id
WHERE g.programme_id = $1"""
PILOTS_BY_CLINIC_SQL = """
SELECT clinic_id, status, count(*) AS n FROM pilot_sites WHERE programme_id = $1
GROUP BY clinic_id, status ORDER BY clinic_id, status"""
OVERDUE_COUNT_SQL = """
SELECT count(*) FROM reports
WHERE programme_id = $1 AND overdue AND status IN ('due', 'returned')"""


async def save_site(
    db: Db,
    state: SiteState,
    programme_id: str,
    version: int,
    at: datetime,
    event: tuple[Any, ...],
) -> None:
    """The site as of `version` (unless that or a later one is on record) and the change's
    audit event (appended whether or not the row moved; its key makes a retry a no-op)."""
    await db.execute(
        UPSERT_SITE_WITH_EVENT_SQL,
        state.site_id,
        uuid.UUID(state.application_id),
        uuid.UUID(programme_id),
        state.seq,
        state.round,
        state.clinic_id,
        state.status.value,
        version,
        state.starts_at,
        state.ends_at,
        state.report_by,
        json.dumps([m.model_dump() for m in state.metrics]),
        json.dumps([r.model_dump() for r in state.results], default=str) if state.results else None,
        state.reason,
        state.escalated,
        at,
        *event,
    )


async def save_pilot(
    db: Db,
    state: PilotState,
    programme_id: str,
    version: int,
    at: datetime,
    event: tuple[Any, ...],
) -> None:
    """The pilot as of `version` (unless that or a later one is on record) and the change's
    audit event (appended whether or not the row moved; its key makes a retry a no-op)."""
    await db.execute(
        UPSERT_PILOT_WITH_EVENT_SQL,
        uuid.UUID(state.application_id),
        uuid.UUID(programme_id),
        state.status.value,
        state.round,
        version,
        uuid.UUID(state.evaluator_id) if state.evaluator_id else None,
        state.evaluation.model_dump_json() if state.evaluation else None,
        state.decision.model_dump_json() if state.decision else None,
        state.flag_reason,
        at,
        *event,
    )


async def coordinators(conn: Db, clinic_id: str) -> list[str]:
    return [str(r["id"]) for r in await conn.fetch(COORDINATORS_SQL, clinic_id)]


async def is_clinic(db: Db, clinic_id: str) -> bool:
    return bool(await db.fetchval(CLINIC_SQL, clinic_id) == "medical_institution")


async def find_evaluator(conn: Conn, request: EvaluatorRequest) -> tuple[Actor | None, str | None]:
    """The pilot's independent expert (or the admin's choice, checked by the same rules):
    returns the expert, or None and why. Call in a transaction."""
    application_id = uuid.UUID(request.application_id)
    conflicts = conflicted_institutions(
        request.applicant_institution_id, request.partner_institutions
    )
    await conn.execute(LOCK_SPECIALTY_SQL, request.specialty)
    return await pick_expert(
        conn,
        application_id,
        request.specialty,
        conflicts,
        request.evaluator_id,
        independent=True,
        none_left="no eligible expert is left to evaluate the pilot",
    )


def _site(row: object) -> SiteState:
    r = dict(row)  # type: ignore[call-overload]
    return SiteState(
        site_id=r["id"],
        application_id=str(r["application_id"]),
        title=r["title"],
        seq=r["seq"],
        round=r["round"],
        clinic_id=r["clinic_id"],
        status=r["status"],
        starts_at=r["starts_at"],
        ends_at=r["ends_at"],
        report_by=r["report_by"],
        metrics=json.loads(r["metrics"]),
        results=json.loads(r["measurements"]) if r["measurements"] else [],
        reason=r["reason"],
        escalated=r["escalated"],
    )


async def clinic_sites(db: Db, clinic_id: str, limit: int = 200) -> list[SiteState]:
    """A clinic's pilot sites, newest first: all a coordinator may see."""
    return [_site(r) for r in await db.fetch(CLINIC_SITES_SQL, clinic_id, limit)]


async def site(db: Db, site_id: str) -> SiteState | None:
    row = await db.fetchrow(SITE_SQL, site_id)
    return None if row is None else _site(row)


async def pilot(db: Db, application_id: uuid.UUID) -> PilotState | None:
    row = await db.fetchrow(PILOT_SQL, application_id)
    if row is None:
        return None
    sites = [_site(r) for r in await db.fetch(APPLICATION_SITES_SQL, application_id)]
    return PilotState(
        application_id=str(row["application_id"]),
        status=row["status"],
        round=row["round"],
        sites=sites,
        evaluator_id=str(row["evaluator_id"]) if row["evaluator_id"] else None,
        evaluation=json.loads(row["evaluation"]) if row["evaluation"] else None,
        decision=json.loads(row["decision"]) if row["decision"] else None,
        flag_reason=row["flag_reason"],
    )


async def evaluations_for(db: Db, evaluator_id: uuid.UUID, limit: int = 200) -> list[str]:
    """Pilots waiting for this expert's evaluation, longest waiting first."""
    rows = await db.fetch(EVALUATOR_PILOTS_SQL, evaluator_id, limit)
    return [str(r["application_id"]) for r in rows]


async def summary(db: Db, programme_id: uuid.UUID) -> PilotSummary:
    """Projects, closed and implemented, pilot sites by clinic and status, overdue reports."""
    row = await db.fetchrow(PROJECTS_SQL, programme_id)
    by_clinic: dict[str, dict[str, int]] = {}
    for r in await db.fetch(PILOTS_BY_CLINIC_SQL, programme_id):
        by_clinic.setdefault(r["clinic_id"], {})[r["status"]] = r["n"]
    closed = row["closed"] if row else 0
    implemented = row["implemented"] if row else 0
    return PilotSummary(
        programme_id=str(programme_id),
        projects=row["projects"] if row else 0,
        closed=closed,
        implemented=implemented,
        implemented_share=round(implemented / closed, 4) if closed else None,
        pilots_by_clinic=by_clinic,
        overdue_reports=await db.fetchval(OVERDUE_COUNT_SQL, programme_id),
    )
