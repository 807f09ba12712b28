"""Programmes: written by the programme workflow's activities, read by the API."""

from __future__ import annotations

import json
import uuid

import asyncpg

from grantflow.store import Conn, Db
from schemas.programme import (
    CorrectionPublic,
    IntakeChange,
    IntakeState,
    ProgrammeCreate,
    ProgrammeParams,
    ProgrammePublic,
    ProgrammeStart,
)

INSERT_PROGRAMME_SQL = """
INSERT INTO programmes (id, name, budget_rub, max_grant_rub, organisation_types, specialties,
                        intake_opens, intake_closes, complex_share_limit,
                        complex_annual_cap_rub, params, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO NOTHING"""
# Only forward: a late retry of "open" must not reopen a closed intake.
UPDATE_INTAKE_SQL = """
UPDATE programmes SET intake_state = $2
WHERE id = $1 AND array_position(ARRAY['scheduled', 'open', 'closed'], intake_state)
                < array_position(ARRAY['scheduled', 'open', 'closed'], $2::text)"""
# An admin's correction: the screening rules only (schemas.programmes.CORRECTABLE).
CORRECT_PROGRAMME_SQL = """
UPDATE programmes SET max_grant_rub = $2, organisation_types = $3, specialties = $4,
                      complex_share_limit = $5, complex_annual_cap_rub = $6
WHERE id = $1"""
CORRECTIONS_SQL = """
SELECT e.at, u.name AS actor_name, e.reason, e.detail
FROM audit_events e LEFT JOIN users u ON u.id = e.actor_id
WHERE e.programme_id = $1 AND e.kind = 'programme_corrected'
ORDER BY e.at, e.id"""
GET_PROGRAMME_SQL = """
SELECT id, name, budget_rub, max_grant_rub, organisation_types, specialties, intake_opens,
       intake_closes, intake_state, complex_share_limit, complex_annual_cap_rub, params,
       created_by, created_at
FROM programmes WHERE id = $1"""
LIST_PROGRAMMES_SQL = """
SELECT id, name, budget_rub, max_grant_rub, organisation_types, specialties, intake_opens,
       intake_closes, intake_state, complex_share_limit, complex_annual_cap_rub, params,
       created_by, created_at
FROM programmes ORDER BY created_at DESC, id DESC LIMIT $1"""


async def insert(conn: Conn, start: ProgrammeStart) -> None:
    spec = start.spec
    await conn.execute(
        INSERT_PROGRAMME_SQL,
        uuid.UUID(start.programme_id),
        spec.name,
        spec.budget_rub,
        spec.max_grant_rub,
        [t.value for t in spec.organisation_types],
        spec.specialties,
        spec.intake_opens,
        spec.intake_closes,
        spec.complex_share_limit,
        spec.complex_annual_cap_rub,
        spec.params.model_dump_json(),
        uuid.UUID(start.created_by),
    )


async def set_intake(conn: Conn, change: IntakeChange) -> None:
    await conn.execute(UPDATE_INTAKE_SQL, uuid.UUID(change.programme_id), change.state.value)


async def correct(conn: Conn, start: ProgrammeStart) -> None:
    spec = start.spec
    await conn.execute(
        CORRECT_PROGRAMME_SQL,
        uuid.UUID(start.programme_id),
        spec.max_grant_rub,
        [t.value for t in spec.organisation_types],
        spec.specialties,
        spec.complex_share_limit,
        spec.complex_annual_cap_rub,
    )


async def corrections(conn: Db, programme_id: uuid.UUID) -> list[CorrectionPublic]:
    return [
        CorrectionPublic(
            at=r["at"],
            actor_name=r["actor_name"],
            reason=r["reason"],
            changed=json.loads(r["detail"])["changed"],
        )
        for r in await conn.fetch(CORRECTIONS_SQL, programme_id)
    ]


async def get(conn: Db, programme_id: uuid.UUID) -> ProgrammePublic | None:
    row = await conn.fetchrow(GET_PROGRAMME_SQL, programme_id)
    return _public(row) if row else None


async def get_start(conn: Db, programme_id: uuid.UUID) -> ProgrammeStart | None:
    """The programme as its creator sent it: the snapshot an application is screened against."""
    row = await conn.fetchrow(GET_PROGRAMME_SQL, programme_id)
    if row is None:
        return None
    public = _public(row)
    spec = ProgrammeCreate.model_validate(
        public.model_dump(include=set(ProgrammeCreate.model_fields))
    )
    return ProgrammeStart(programme_id=public.id, created_by=str(row["created_by"]), spec=spec)


async def list_recent(conn: Db, limit: int) -> list[ProgrammePublic]:
    return [_public(r) for r in await conn.fetch(LIST_PROGRAMMES_SQL, limit)]


def _public(row: asyncpg.Record) -> ProgrammePublic:
    return ProgrammePublic(
        id=str(row["id"]),
        name=row["name"],
        budget_rub=row["budget_rub"],
        max_grant_rub=row["max_grant_rub"],
        organisation_types=row["organisation_types"],
        specialties=row["specialties"],
        intake_opens=row["intake_opens"],
        intake_closes=row["intake_closes"],
        intake_state=IntakeState(row["intake_state"]),
        complex_share_limit=float(row["complex_share_limit"]),
        complex_annual_cap_rub=row["complex_annual_cap_rub"],
        params=ProgrammeParams.model_validate(json.loads(row["params"])),
        created_at=row["created_at"],
    )
