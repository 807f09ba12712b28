"""Agreements, their tranches and reports: the read model of the agreement workflow."""

from __future__ import annotations

import uuid

from schemas.agreements import AgreementState, OverdueReport, Report, Tranche
from store import Conn, Db

# version makes a retried or late write a no-op instead of a step back.
UPSERT_AGREEMENT_SQL = """
INSERT INTO agreements (application_id, programme_id, amount_rub, status, version, offered_at,
                        accept_by, accepted_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (application_id) DO UPDATE
SET status = $4, version = $5, accepted_at = $8, updated_at = $9
WHERE agreements.version < $5"""
UPSERT_TRANCHE_SQL = """
INSERT INTO tranches (application_id, seq, amount_rub, due_at, status, held_reason, released_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (application_id, seq) DO UPDATE
SET due_at = $4, status = $5, held_reason = $6, released_at = $7"""
UPSERT_REPORT_SQL = """
INSERT INTO reports (application_id, seq, due_at, status, body, comment, final, overdue,
                     reminded, programme_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (application_id, seq) DO UPDATE
SET status = $4, body = $5, comment = $6, overdue = $8, reminded = $9"""
AGREEMENT_SQL = """
SELECT application_id, amount_rub, status, offered_at, accept_by, accepted_at
FROM agreements WHERE application_id = $1"""
TRANCHES_SQL = """
SELECT seq, amount_rub, due_at, status, held_reason, released_at FROM tranches
WHERE application_id = $1 ORDER BY seq"""
REPORTS_SQL = """
SELECT seq, due_at, status, final, body, comment, reminded, overdue FROM reports
WHERE application_id = $1 ORDER BY seq"""
# Overdue and still not in: what admins chase.
OVERDUE_REPORTS_SQL = """
SELECT r.application_id, a.content ->> 'title' AS title, r.seq, r.final, r.due_at, r.status
FROM reports r JOIN applications a ON a.id = r.application_id
WHERE r.overdue AND r.status IN ('due', 'returned')
  AND ($1::uuid IS NULL OR r.programme_id = $1)
ORDER BY r.due_at, r.application_id, r.seq
LIMIT $2"""
DISBURSED_SQL = """
SELECT coalesce(sum(amount_rub), 0)::bigint FROM ledger_entries
WHERE application_id = $1 AND kind = 'disburse'"""


async def save(conn: Conn, state: AgreementState, programme_id: str, version: int) -> bool:
    """Write the agreement as of `version`; False (and nothing written) when a later version is
    already on record. Call in a transaction."""
    app = uuid.UUID(state.application_id)
    result = await conn.execute(
        UPSERT_AGREEMENT_SQL,
        app,
        uuid.UUID(programme_id),
        state.amount_rub,
        state.status.value,
        version,
        state.offered_at,
        state.accept_by,
        state.accepted_at,
        state.accepted_at or state.offered_at,
    )
    if result.endswith(" 0"):
        return False
    await conn.executemany(
        UPSERT_TRANCHE_SQL,
        [
            (app, t.seq, t.amount_rub, t.due_at, t.status.value, t.held_reason, t.released_at)
            for t in state.tranches
        ],
    )
    await conn.executemany(
        UPSERT_REPORT_SQL,
        [
            (
                app,
                r.seq,
                r.due_at,
                r.status.value,
                r.body,
                r.comment,
                r.final,
                r.overdue,
                r.reminded,
                uuid.UUID(programme_id),
            )
            for r in state.reports
        ],
    )
    return True


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
        )
        for r in rows
    ]
