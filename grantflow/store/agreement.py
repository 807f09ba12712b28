"""Agreements, their tranches and reports: the read model of the agreement workflow."""

from __future__ import annotations

import uuid
from datetime import datetime

from grantflow.store import Conn, Db

# The review stage's matching and conflict rules pick the expert for a project's reports.
from grantflow.store.review import conflicted_institutions, pick_expert
from schemas.agreement import (
    AgreementState,
    OverdueReport,
    Report,
    ReportReviewerRequest,
    ReportToReview,
    Tranche,
)
from schemas.common import Actor, Role

# The whole agreement in one statement (one round trip): the agreement row, only if `version`
# moves it forward (a retried or late write is then a no-op instead of a step back); while it is
# offered, the application's deadline (an admin may have moved the acceptance deadline); and its
# tranches and reports, written only if the agreement row was and only where a row changed (an
# unchanged row gets no new version). Sibling statements see one snapshot, so the later ones
# learn from `agreement`'s RETURNING whether it was written; the foreign keys of new tranches and
# reports are checked at the statement's end, when the new agreement row is there.
SAVE_AGREEMENT_SQL = """
WITH agreement AS (
    INSERT INTO agreements (application_id, programme_id, amount_rub, status, version,
                            offered_at, accept_by, accepted_at, updated_at, report_reviewer_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (application_id) DO UPDATE
    SET status = $4, version = $5, accept_by = $7, accepted_at = $8, updated_at = $9,
        report_reviewer_id = $10
    WHERE agreements.version < $5
    RETURNING application_id
), accept_by AS (
    UPDATE applications SET deadline = $7
    WHERE id = $1 AND $4 = 'offered' AND stage = 'approved' AND deadline IS DISTINCT FROM $7
      AND EXISTS (SELECT FROM agreement)
), tranche AS (
    INSERT INTO tranches (application_id, seq, amount_rub, due_at, status, held_reason,
                          released_at)
    SELECT $1, t.* FROM unnest($11::integer[], $12::bigint[], $13::timestamptz[], $14::text[],
                                $15::text[], $16::timestamptz[]) AS t
    WHERE EXISTS (SELECT FROM agreement)
    ON CONFLICT (application_id, seq) DO UPDATE
    SET due_at = EXCLUDED.due_at, status = EXCLUDED.status, held_reason = EXCLUDED.held_reason,
        released_at = EXCLUDED.released_at
    WHERE (tranches.due_at, tranches.status, tranches.held_reason, tranches.released_at)
          IS DISTINCT FROM
          (EXCLUDED.due_at, EXCLUDED.status, EXCLUDED.held_reason, EXCLUDED.released_at)
), report AS (
    INSERT INTO reports (application_id, seq, due_at, status, body, comment, final, overdue,
                         reminded, kind, programme_id)
    SELECT $1, r.*, $2 FROM unnest($17::integer[], $18::timestamptz[], $19::text[], $20::text[],
                                    $21::text[], $22::boolean[], $23::boolean[],
                                    $24::boolean[], $25::text[]) AS r
    WHERE EXISTS (SELECT FROM agreement)
    ON CONFLICT (application_id, seq) DO UPDATE
    SET due_at = EXCLUDED.due_at, status = EXCLUDED.status, body = EXCLUDED.body,
        comment = EXCLUDED.comment, overdue = EXCLUDED.overdue, reminded = EXCLUDED.reminded
    WHERE (reports.due_at, reports.status, reports.body, reports.comment, reports.overdue,
           reports.reminded)
          IS DISTINCT FROM
          (EXCLUDED.due_at, EXCLUDED.status, EXCLUDED.body, EXCLUDED.comment, EXCLUDED.overdue,
           EXCLUDED.reminded)
)
SELECT count(*) FROM agreement"""
AGREEMENT_SQL = """
SELECT a.application_id, a.amount_rub, a.status, a.offered_at, a.accept_by, a.accepted_at,
       u.id AS reviewer_id, u.name AS reviewer_name, u.institution_id AS reviewer_institution
FROM agreements a LEFT JOIN users u ON u.id = a.report_reviewer_id
WHERE a.application_id = $1"""
REPORT_REVIEWER_SQL = "SELECT report_reviewer_id FROM agreements WHERE application_id = $1"
# A list's offered agreements at once (by primary key); an applicant's only among its own.
OFFERED_SQL = """
SELECT a.application_id, a.accept_by
FROM agreements a JOIN applications p ON p.id = a.application_id
WHERE a.application_id = ANY($1::uuid[]) AND a.status = 'offered'
  AND ($2::uuid IS NULL OR p.applicant_id = $2::uuid)"""
APPLICATION_FACTS_SQL = """
SELECT specialty, institution_id,
       ARRAY(SELECT jsonb_array_elements_text(content -> 'partner_institutions')) AS partners
FROM applications WHERE id = $1"""
# Submitted reports of the projects an expert was assigned to, oldest deadline first.
REPORTS_TO_REVIEW_SQL = """
SELECT r.application_id, a.content ->> 'title' AS title, r.seq, r.kind, r.due_at, r.body
FROM agreements g
JOIN reports r ON r.application_id = g.application_id AND r.status = 'submitted'
JOIN applications a ON a.id = g.application_id
WHERE g.report_reviewer_id = $1 AND g.status = 'accepted'
ORDER BY r.due_at, r.application_id, r.seq
LIMIT $2"""
# Every project's reports waiting for a decision, for the admins (any project's is theirs).
SUBMITTED_REPORTS_SQL = """
SELECT r.application_id, a.content ->> 'title' AS title, r.seq, r.kind, r.due_at, r.body
FROM reports r
JOIN agreements g ON g.application_id = r.application_id AND g.status = 'accepted'
JOIN applications a ON a.id = r.application_id
WHERE r.status = 'submitted'
ORDER BY r.due_at, r.application_id, r.seq
LIMIT $1"""
TRANCHES_SQL = """
SELECT seq, amount_rub, due_at, status, held_reason, released_at FROM tranches
WHERE application_id = $1 ORDER BY seq"""
REPORTS_SQL = """
SELECT seq, due_at, status, final, kind, body, comment, reminded, overdue FROM reports
WHERE application_id = $1 ORDER BY seq"""
# Overdue and still not in: what admins chase.
OVERDUE_REPORTS_SQL = """
SELECT r.application_id, a.content ->> 'title' AS title, r.seq, r.final, r.kind, r.due_at,
       r.status
FROM reports r JOIN applications a ON a.id = r.application_id
WHERE r.overdue AND r.status IN ('due', 'returned')
  AND ($1::uuid IS NULL OR r.programme_id = $1)
ORDER BY r.due_at, r.application_id, r.seq
LIMIT $2"""
DISBURSED_SQL = """
SELECT coalesce(sum(amount_rub), 0)::bigint FROM ledger_entries
WHERE application_id = $1 AND kind = 'disburse'"""


async def save(conn: Conn, state: AgreementState, programme_id: str, version: int) -> bool:
    """Write the agreement as of `version` in one round trip; False (and nothing written) when
    this or a later version is already on record. Tranches and reports that did not change are
    left as they are. Call in a transaction (with the change's event and notifications)."""
    app = uuid.UUID(state.application_id)
    tranches, reports = state.tranches, state.reports
    written = await conn.fetchval(
        SAVE_AGREEMENT_SQL,
        app,
        uuid.UUID(programme_id),
        state.amount_rub,
        state.status.value,
        version,
        state.offered_at,
        state.accept_by,
        state.accepted_at,
        state.accepted_at or state.offered_at,
        uuid.UUID(state.report_reviewer.user_id) if state.report_reviewer else None,
        [t.seq for t in tranches],
        [t.amount_rub for t in tranches],
        [t.due_at for t in tranches],
        [t.status.value for t in tranches],
        [t.held_reason for t in tranches],
        [t.released_at for t in tranches],
        [r.seq for r in reports],
        [r.due_at for r in reports],
        [r.status.value for r in reports],
        [r.body for r in reports],
        [r.comment for r in reports],
        [r.final for r in reports],
        [r.overdue for r in reports],
        [r.reminded for r in reports],
        [r.kind.value for r in reports],
    )
    return bool(written)


async def get(db: Db, application_id: uuid.UUID) -> AgreementState | None:
    row = await db.fetchrow(AGREEMENT_SQL, application_id)
    if row is None:
        return None
    return AgreementState(
        application_id=str(row["application_id"]),
        amount_rub=row["amount_rub"],
        status=row["status"],
        offered_at=row["offered_at"],
        accept_by=row["accept_by"],
        accepted_at=row["accepted_at"],
        tranches=[
            Tranche.model_validate(dict(r)) for r in await db.fetch(TRANCHES_SQL, application_id)
        ],
        reports=[
            Report.model_validate(dict(r)) for r in await db.fetch(REPORTS_SQL, application_id)
        ],
        disbursed_rub=await db.fetchval(DISBURSED_SQL, application_id),
        report_reviewer=None
        if row["reviewer_id"] is None
        else Actor(
            user_id=str(row["reviewer_id"]),
            role=Role.reviewer,
            name=row["reviewer_name"],
            institution_id=row["reviewer_institution"],
        ),
    )


async def offered(
    db: Db, application_ids: list[uuid.UUID], applicant_id: uuid.UUID | None
) -> dict[uuid.UUID, datetime]:
    """The deadline to accept each of these applications' agreements that is offered and not
    yet answered (of `applicant_id`'s applications only, unless it is None), in one query."""
    rows = await db.fetch(OFFERED_SQL, application_ids, applicant_id)
    return {r["application_id"]: r["accept_by"] for r in rows}


async def report_reviewer(db: Db, application_id: uuid.UUID) -> str | None:
    """The id of the expert assigned to the application's reports, if any."""
    found = await db.fetchval(REPORT_REVIEWER_SQL, application_id)
    return None if found is None else str(found)


async def reports_to_review(
    db: Db, reviewer_id: uuid.UUID, limit: int = 200
) -> list[ReportToReview]:
    """Submitted reports waiting for this expert."""
    rows = await db.fetch(REPORTS_TO_REVIEW_SQL, reviewer_id, limit)
    return [
        ReportToReview.model_validate({**r, "application_id": str(r["application_id"])})
        for r in rows
    ]


async def submitted_reports(db: Db, limit: int) -> list[ReportToReview]:
    """Every project's submitted reports, oldest deadline first."""
    rows = await db.fetch(SUBMITTED_REPORTS_SQL, limit)
    return [
        ReportToReview.model_validate({**r, "application_id": str(r["application_id"])})
        for r in rows
    ]


async def find_report_reviewer(
    conn: Conn, request: ReportReviewerRequest
) -> tuple[Actor | None, str | None]:
    """The expert for the application's reports: the one named, if an expert without a
    conflict of interest (having reviewed the application is no bar: it knows the project), or
    else the least loaded expert of the specialty the review stage would pick. Returns the
    expert, or None and why."""
    app = uuid.UUID(request.application_id)
    facts = await conn.fetchrow(APPLICATION_FACTS_SQL, app)
    if facts is None:
        return None, "no such application"
    conflicts = conflicted_institutions(facts["institution_id"], list(facts["partners"]))
    return await pick_expert(
        conn,
        app,
        facts["specialty"],
        conflicts,
        request.reviewer_id,
        independent=False,
        none_left="no eligible expert is left to review the reports",
    )


async def overdue_reports(
    db: Db, programme_id: uuid.UUID | None, limit: int = 200
) -> list[OverdueReport]:
    """Reports past their deadline and not submitted (or returned and not resubmitted)."""
    rows = await db.fetch(OVERDUE_REPORTS_SQL, programme_id, limit)
    return [
        OverdueReport(
            application_id=str(r["application_id"]),
            title=r["title"],
            seq=r["seq"],
            final=r["final"],
            due_at=r["due_at"],
            status=r["status"],
            kind=r["kind"],
        )
        for r in rows
    ]
