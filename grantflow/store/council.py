"""Council sessions, their agendas, votes and decisions."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from grantflow.store import Conn, Db, audit
from schemas.common import Actor, Role
from schemas.council import (
    AgendaItem,
    Choice,
    Decision,
    ReviewSummary,
    SessionBudget,
    SessionListItem,
    SessionStart,
    SessionSummary,
    VoteRecord,
    VoteSpec,
)

COUNCIL_MEMBERS_SQL = """
SELECT id, name, role, institution_id FROM users
WHERE role = 'council' AND deactivated_at IS NULL ORDER BY id"""
MEMBERS_BY_ID_SQL = """
SELECT id, name, role, institution_id FROM users
WHERE id = ANY ($1::uuid[]) AND deactivated_at IS NULL ORDER BY id"""
INSERT_SESSION_SQL = """
INSERT INTO council_sessions (id, programme_id, name, status, chair_id, quorum, members,
                              opened_by, opened_at)
VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8)
ON CONFLICT (id) DO NOTHING"""
# Reviewed or deferred applications of the programme that no open session has on its agenda
# and no session has decided (but to defer), best score first. The insert takes them for this
# session in one statement. A decision is on record before its session closes, while the
# application's stage follows from its own workflow's write, which lags by a task timeout when
# a worker dies: without the decisions, a session opened meanwhile took the application again
# (the chaos soak: one decided nine times in ten seconds, an approval's grant held twice).
TAKE_AGENDA_SQL = """
INSERT INTO council_items (session_id, application_id, rank)
SELECT $1, a.id, row_number() OVER (ORDER BY a.review_score DESC NULLS LAST, a.submitted_at, a.id)
FROM applications a
WHERE a.programme_id = $2 AND a.stage IN ('reviewed', 'deferred')
  AND NOT EXISTS (
      SELECT 1 FROM council_items i JOIN council_sessions s ON s.id = i.session_id
      WHERE i.application_id = a.id AND s.status = 'open')
  AND NOT EXISTS (
      SELECT 1 FROM decisions d WHERE d.application_id = a.id AND d.outcome <> 'deferred')
ON CONFLICT DO NOTHING"""
HAS_AGENDA_SQL = "SELECT EXISTS (SELECT 1 FROM council_items WHERE session_id = $1)"
AGENDA_SQL = """
SELECT i.rank, a.id, a.content->>'title' AS title, a.institution_id, a.requested_rub,
       a.review_score, a.review_spread,
       coalesce((SELECT json_agg(json_build_object('score', r.score,
                                                   'recommendation', r.recommendation,
                                                   'comments', r.comments)
                                 ORDER BY r.submitted_at, r.task_id)
                 FROM reviews r WHERE r.application_id = a.id), '[]') AS reviews
FROM council_items i JOIN applications a ON a.id = i.application_id
WHERE i.session_id = $1
ORDER BY i.rank"""
UPSERT_VOTE_SQL = """
INSERT INTO votes (session_id, application_id, member_id, choice, amount_rub, reason, at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (session_id, application_id, member_id)
DO UPDATE SET choice = $4, amount_rub = $5, reason = $6, at = $7 WHERE votes.at <= $7"""
INSERT_DECISION_SQL = """
INSERT INTO decisions (session_id, application_id, outcome, amount_rub, reason, votes, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (session_id, application_id) DO NOTHING"""
SET_APPROVED_SQL = "UPDATE applications SET approved_rub = $2 WHERE id = $1"
CLOSE_SESSION_SQL = """
UPDATE council_sessions SET status = 'closed', closed_at = $2 WHERE id = $1 AND status = 'open'"""
SESSION_SQL = """
SELECT id, programme_id, name, status, chair_id, quorum, members FROM council_sessions
WHERE id = $1"""
SESSIONS_OF_PROGRAMME_SQL = """
SELECT id, programme_id, name, status, chair_id, quorum, members, opened_at, closed_at
FROM council_sessions
WHERE programme_id = $1 ORDER BY opened_at DESC LIMIT $2"""
DECISIONS_SQL = """
SELECT session_id, application_id, outcome, amount_rub, reason, votes, decided_at
FROM decisions WHERE session_id = $1"""

INSTITUTION_NAMES_SQL = "SELECT id, name FROM institutions WHERE id = ANY($1::text[])"


async def institution_names(db: Db, ids: list[str]) -> dict[str, str]:
    """The institutions' names by id (an unknown id is left out)."""
    return {r["id"]: r["name"] for r in await db.fetch(INSTITUTION_NAMES_SQL, ids)}


def _actor(r: asyncpg.Record) -> Actor:
    return Actor(
        user_id=str(r["id"]),
        role=Role(r["role"]),
        name=r["name"],
        institution_id=r["institution_id"],
    )


async def members(db: Db, ids: list[str] | None) -> list[Actor]:
    """The named users (or every council member), as actors."""
    if ids is None:
        rows = await db.fetch(COUNCIL_MEMBERS_SQL)
    else:
        rows = await db.fetch(MEMBERS_BY_ID_SQL, [uuid.UUID(i) for i in ids])
    return [_actor(r) for r in rows]


async def sessions_of_programme(
    db: Db, programme_id: uuid.UUID, limit: int
) -> list[SessionSummary]:
    """The programme's sessions, the latest opened first."""
    rows = await db.fetch(SESSIONS_OF_PROGRAMME_SQL, programme_id, limit)
    return [
        SessionSummary(
            session_id=str(r["id"]),
            programme_id=str(r["programme_id"]),
            name=r["name"],
            open=r["status"] == "open",
            quorum=r["quorum"],
            members=len(r["members"]),
            opened_at=r["opened_at"],
            closed_at=r["closed_at"],
        )
        for r in rows
    ]


async def open_session(conn: Conn, start: SessionStart) -> list[AgendaItem]:
    """Record the session and take its agenda; call in a transaction. A retry finds the
    session and its agenda already there and returns the same agenda."""
    session = uuid.UUID(start.session_id)
    await conn.execute(
        INSERT_SESSION_SQL,
        session,
        uuid.UUID(start.programme_id),
        start.name,
        uuid.UUID(start.chair_id),
        start.quorum,
        [uuid.UUID(m.user_id) for m in start.members],
        uuid.UUID(start.opened_by.user_id),
        start.opened_at,
    )
    if not await conn.fetchval(HAS_AGENDA_SQL, session):
        await conn.execute(TAKE_AGENDA_SQL, session, uuid.UUID(start.programme_id))
    return await agenda(conn, session)


async def agenda(db: Db, session_id: uuid.UUID) -> list[AgendaItem]:
    return [
        AgendaItem(
            rank=r["rank"],
            application_id=str(r["id"]),
            title=r["title"],
            institution_id=r["institution_id"],
            requested_rub=r["requested_rub"],
            score=_float(r["review_score"]),
            spread=_float(r["review_spread"]),
            reviews=[ReviewSummary.model_validate(x) for x in json.loads(r["reviews"])],
        )
        for r in await db.fetch(AGENDA_SQL, session_id)
    ]


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# A vote and its audit event as one statement: one round trip instead of four.
VOTE_WITH_EVENT_SQL = audit.with_event(UPSERT_VOTE_SQL, 8)


async def record_vote(db: Db, record: VoteRecord, event: tuple[Any, ...]) -> None:
    """Record the vote (replacing the member's earlier one) with its event (`audit.event_args`)."""
    v = record.vote
    await db.execute(
        VOTE_WITH_EVENT_SQL,
        uuid.UUID(record.session_id),
        uuid.UUID(v.application_id),
        uuid.UUID(v.actor.user_id),
        v.choice.value,
        v.amount_rub,
        v.reason,
        record.at,
        *event,
    )


async def record_decision(conn: Conn, d: Decision) -> None:
    await conn.execute(
        INSERT_DECISION_SQL,
        uuid.UUID(d.session_id),
        uuid.UUID(d.application_id),
        d.outcome.value,
        d.amount_rub,
        d.reason,
        d.tally.model_dump_json(),
        d.decided_at,
    )
    if d.amount_rub is not None:
        await conn.execute(SET_APPROVED_SQL, uuid.UUID(d.application_id), d.amount_rub)


async def close_session(conn: Conn, session_id: str, at: datetime) -> None:
    await conn.execute(CLOSE_SESSION_SQL, uuid.UUID(session_id), at)


# The sessions a member sits on, open ones first, with how far each agenda has come.
MEMBER_SESSIONS_SQL = """
SELECT s.id, s.programme_id, p.name AS programme_name, s.name, s.status = 'open' AS open,
       s.opened_at,
       (SELECT count(*) FROM council_items i WHERE i.session_id = s.id) AS items,
       (SELECT count(*) FROM decisions d WHERE d.session_id = s.id) AS decided,
       (SELECT count(*) FROM votes v WHERE v.session_id = s.id AND v.member_id = $1) AS my_votes
FROM council_sessions s JOIN programmes p ON p.id = s.programme_id
WHERE $1 = ANY (s.members)
ORDER BY s.status = 'open' DESC, s.opened_at DESC
LIMIT $2"""
MEMBER_VOTES_SQL = """
SELECT application_id, choice, amount_rub, reason FROM votes
WHERE session_id = $1 AND member_id = $2"""
SESSION_BUDGET_SQL = """
SELECT p.id, p.name, p.budget_rub,
       coalesce((SELECT sum(CASE e.kind WHEN 'reserve' THEN e.amount_rub
                                        WHEN 'release' THEN -e.amount_rub ELSE 0 END)
                 FROM ledger_entries e WHERE e.programme_id = p.id), 0)::bigint AS reserved
FROM council_sessions s JOIN programmes p ON p.id = s.programme_id
WHERE s.id = $1"""


async def member_sessions(db: Db, member_id: uuid.UUID, limit: int) -> list[SessionListItem]:
    return [
        SessionListItem(
            session_id=str(r["id"]),
            programme_id=str(r["programme_id"]),
            programme_name=r["programme_name"],
            name=r["name"],
            open=r["open"],
            opened_at=r["opened_at"],
            items=r["items"],
            decided=r["decided"],
            my_votes=r["my_votes"],
        )
        for r in await db.fetch(MEMBER_SESSIONS_SQL, member_id, limit)
    ]


async def member_votes(db: Db, session_id: uuid.UUID, member_id: uuid.UUID) -> list[VoteSpec]:
    """The member's latest vote on each item of the session."""
    return [
        VoteSpec(
            application_id=str(r["application_id"]),
            choice=Choice(r["choice"]),
            amount_rub=r["amount_rub"],
            reason=r["reason"],
        )
        for r in await db.fetch(MEMBER_VOTES_SQL, session_id, member_id)
    ]


async def session_budget(db: Db, session_id: uuid.UUID) -> SessionBudget | None:
    r = await db.fetchrow(SESSION_BUDGET_SQL, session_id)
    if r is None:
        return None
    return SessionBudget(
        programme_id=str(r["id"]),
        programme_name=r["name"],
        budget_rub=r["budget_rub"],
        reserved_rub=r["reserved"],
        remaining_rub=r["budget_rub"] - r["reserved"],
    )
