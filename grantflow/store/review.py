"""Review tasks, reviews and the admin's flags: the read model of the review workflow."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from grantflow.store import Conn, Db, audit
from grantflow.store.users import institution_id
from schemas.common import Actor, Role
from schemas.programme import ProgrammeParams
from schemas.review import (
    FlaggedApplication,
    InboxItem,
    OfferRequest,
    ReviewPublic,
    ReviewRecord,
    Task,
    TaskStatus,
    TaskUpdate,
)

# Serialises assignment within a specialty, so that two applications offered at the same moment
# see each other's offers when they count a reviewer's open tasks.
LOCK_SPECIALTY_SQL = "SELECT pg_advisory_xact_lock(hashtext('review:' || $1))"
TASK_REVIEWER_SQL = """
SELECT u.id, u.name, u.institution_id FROM review_tasks t JOIN users u ON u.id = t.reviewer_id
WHERE t.id = $1"""
# The eligible expert with the fewest open tasks, ties broken by id: same specialty, not from
# the applicant's institution or a partner's, never offered this application before.
PICK_REVIEWER_SQL = """
SELECT u.id, u.name, u.institution_id
FROM users u
LEFT JOIN LATERAL (
    SELECT count(*) AS open_tasks FROM review_tasks t
    WHERE t.reviewer_id = u.id AND t.status IN ('offered', 'accepted')
) load ON true
WHERE u.role = 'reviewer' AND u.specialty = $1 AND u.deactivated_at IS NULL
  AND (u.institution_id IS NULL OR NOT (u.institution_id = ANY ($2::text[])))
  AND NOT EXISTS (SELECT 1 FROM review_tasks t WHERE t.application_id = $3 AND t.reviewer_id = u.id)
ORDER BY load.open_tasks, u.id
LIMIT 1"""
CHECK_REVIEWER_SQL = """
SELECT u.id, u.name, u.role, u.specialty, u.institution_id,
       EXISTS (SELECT 1 FROM review_tasks t WHERE t.application_id = $2 AND t.reviewer_id = u.id)
           AS offered_before
FROM users u WHERE u.id = $1"""
INSERT_TASK_SQL = """
INSERT INTO review_tasks (id, application_id, programme_id, reviewer_id, workflow_id, status,
                          version, offered_at, accept_by, deadline, assigned_by, updated_at)
VALUES ($1, $2, $3, $4, $5, 'offered', $6, $7, $8, $8, $9, $7)
ON CONFLICT (id) DO NOTHING"""
# version makes a retried or late write a no-op instead of a step back.
UPDATE_TASK_SQL = """
UPDATE review_tasks
SET status = $3, version = $2, due_by = $4, deadline = $5, reason = $6, conflict_declared = $7,
    reminders_sent = $8, updated_at = $9
WHERE id = $1 AND version < $2"""
# A task's change and its audit event (`audit.event_args`, from $10 on): one round trip.
UPDATE_TASK_WITH_EVENT_SQL = audit.with_event(UPDATE_TASK_SQL, 10)
CANCEL_OPEN_TASKS_SQL = """
UPDATE review_tasks SET status = 'cancelled', version = $2, deadline = NULL, updated_at = $3
WHERE application_id = $1 AND status IN ('offered', 'accepted') AND version < $2"""
INSERT_REVIEW_SQL = """
INSERT INTO reviews (task_id, application_id, reviewer_id, scores, score, recommendation,
                     comments, submitted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (task_id) DO NOTHING"""
COUNT_REVIEWS_SQL = """
UPDATE applications SET reviews_submitted = (SELECT count(*) FROM reviews WHERE application_id = $1)
WHERE id = $1"""
SET_FLAG_SQL = """
UPDATE applications SET flag_reason = $2, flagged_at = $3 WHERE id = $1"""
CLEAR_FLAG_SQL = "UPDATE applications SET flag_reason = NULL, flagged_at = NULL WHERE id = $1"
ADMINS_SQL = "SELECT id FROM users WHERE role = 'admin' ORDER BY id"

_INBOX_COLUMNS = """
SELECT t.id, t.application_id, t.programme_id, a.content->>'title' AS title, a.specialty, t.status,
       t.deadline, t.offered_at, t.reviewer_id, u.name AS reviewer_name,
       t.deadline < now() AS overdue
FROM review_tasks t
JOIN applications a ON a.id = t.application_id
JOIN users u ON u.id = t.reviewer_id"""
# A reviewer's open tasks, soonest deadline first; keyset on (deadline, id).
INBOX_SQL = (
    _INBOX_COLUMNS
    + """
WHERE t.reviewer_id = $1 AND t.status IN ('offered', 'accepted')
  AND ($2::timestamptz IS NULL OR (t.deadline, t.id) > ($2, $3::uuid))
ORDER BY t.deadline, t.id
LIMIT $4"""
)
# Every open task past its deadline (the workflow expires it within moments, unless an
# admin extended it or its worker is down: both worth seeing).
OVERDUE_SQL = (
    _INBOX_COLUMNS
    + """
WHERE t.status IN ('offered', 'accepted') AND t.deadline < now()
  AND ($1::timestamptz IS NULL OR (t.deadline, t.id) > ($1, $2::uuid))
ORDER BY t.deadline, t.id
LIMIT $3"""
)
# The task with its programme's parameters (rubric, score range), which every reviewer's action
# is checked against: one round trip instead of two.
TASK_SQL = """
SELECT t.id, t.application_id, t.programme_id, a.content->>'title' AS title, a.specialty, t.status,
       t.deadline, t.offered_at, t.reviewer_id, u.name AS reviewer_name,
       t.deadline < now() AS overdue, p.params AS programme_params, t.accept_by, t.due_by
FROM review_tasks t
JOIN applications a ON a.id = t.application_id
JOIN users u ON u.id = t.reviewer_id
JOIN programmes p ON p.id = t.programme_id
WHERE t.id = $1"""
APPLICATION_TASKS_SQL = _INBOX_COLUMNS + "\nWHERE t.application_id = $1 ORDER BY t.offered_at, t.id"
REVIEWS_SQL = """
SELECT r.task_id, r.reviewer_id, u.name AS reviewer_name, r.scores, r.score, r.recommendation,
       r.comments, r.submitted_at
FROM reviews r JOIN users u ON u.id = r.reviewer_id
WHERE r.application_id = $1
ORDER BY r.submitted_at, r.task_id"""
# A reviewer's tasks that ended (reviewed, declined, expired, taken away), the latest first.
CLOSED_SQL = (
    _INBOX_COLUMNS.replace("AS overdue", "AS overdue, t.reason, t.updated_at")
    + """
WHERE t.reviewer_id = $1 AND t.status NOT IN ('offered', 'accepted')
ORDER BY t.updated_at DESC, t.id
LIMIT $2"""
)
REVIEW_DRAFT_SQL = """
SELECT content, updated_at FROM review_drafts WHERE task_id = $1 AND reviewer_id = $2"""
SAVE_REVIEW_DRAFT_SQL = """
INSERT INTO review_drafts (task_id, reviewer_id, content) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (task_id) DO UPDATE SET content = excluded.content, updated_at = now()
WHERE review_drafts.reviewer_id = excluded.reviewer_id"""
FLAGGED_SQL = """
SELECT id, programme_id, content->>'title' AS title, specialty, stage, flag_reason, flagged_at
FROM applications
WHERE flag_reason IS NOT NULL
  AND ($1::timestamptz IS NULL OR (flagged_at, id) > ($1, $2::uuid))
ORDER BY flagged_at, id
LIMIT $3"""


def conflicted_institutions(applicant_institution_id: str | None, partners: list[str]) -> list[str]:
    """The applicant's institution and its partners: their experts never review (or evaluate)
    the application."""
    found = {institution_id(p) for p in partners}
    if applicant_institution_id:
        found.add(applicant_institution_id)
    return sorted(found)


async def offer(conn: Conn, request: OfferRequest) -> tuple[Actor | None, str | None]:
    """Insert the task for the best eligible reviewer (or the admin's choice); returns the
    reviewer, or None and why. Call it in a transaction."""
    if (row := await conn.fetchrow(TASK_REVIEWER_SQL, uuid.UUID(request.task_id))) is not None:
        return _actor(row), None  # a retry: the task is already on record
    application_id = uuid.UUID(request.application_id)
    conflicts = conflicted_institutions(
        request.applicant_institution_id, request.partner_institutions
    )
    await conn.execute(LOCK_SPECIALTY_SQL, request.specialty)
    if request.reviewer_id is None:
        row = await conn.fetchrow(PICK_REVIEWER_SQL, request.specialty, conflicts, application_id)
        if row is None:
            return None, "no eligible expert is left"
    else:
        try:
            chosen = uuid.UUID(request.reviewer_id)
        except ValueError:
            return None, "no such user"
        row = await conn.fetchrow(CHECK_REVIEWER_SQL, chosen, application_id)
        if row is None:
            return None, "no such user"
        if row["role"] != Role.reviewer.value:
            return None, f"{row['name']} is not a reviewer"
        if row["institution_id"] in conflicts:
            return None, f"{row['name']} has a conflict of interest: {row['institution_id']}"
        if row["offered_before"]:
            return None, f"{row['name']} has already been offered this application"
    await conn.execute(
        INSERT_TASK_SQL,
        uuid.UUID(request.task_id),
        application_id,
        uuid.UUID(request.programme_id),
        row["id"],
        request.workflow_id,
        request.version,
        request.offered_at,
        request.accept_by,
        uuid.UUID(request.assigned_by.user_id) if request.assigned_by else None,
    )
    return _actor(row), None


def _actor(row: asyncpg.Record) -> Actor:
    return Actor(
        user_id=str(row["id"]),
        role=Role.reviewer,
        name=row["name"],
        institution_id=row["institution_id"],
    )


async def update_task_with_event(
    db: Db, task: TaskUpdate, version: int, at: datetime, event: tuple[Any, ...]
) -> None:
    """Move a task to the change's `version` (unless it is there already) and append the
    change's audit event, in one statement (a transaction of its own
    when `db` is outside one); the event is appended whether or not the task moved, as a
    separate insert would (its key makes a retry a no-op)."""
    await db.execute(UPDATE_TASK_WITH_EVENT_SQL, *_task_args(task, version, at), *event)


def _task_args(task: TaskUpdate, version: int, at: datetime) -> tuple[Any, ...]:
    return (
        uuid.UUID(task.task_id),
        version,
        task.status.value,
        task.due_by,
        task.deadline,
        task.reason,
        task.conflict_declared,
        task.reminders_sent,
        at,
    )


async def cancel_open_tasks(conn: Conn, application_id: str, version: int, at: datetime) -> None:
    await conn.execute(CANCEL_OPEN_TASKS_SQL, uuid.UUID(application_id), version, at)


async def insert_review(conn: Conn, application_id: str, review: ReviewRecord) -> None:
    app_id = uuid.UUID(application_id)
    await conn.execute(
        INSERT_REVIEW_SQL,
        uuid.UUID(review.task_id),
        app_id,
        uuid.UUID(review.reviewer_id),
        json.dumps(review.scores),
        review.score,
        review.recommendation.value,
        review.comments,
        review.submitted_at,
    )
    await conn.execute(COUNT_REVIEWS_SQL, app_id)


async def set_flag(conn: Conn, application_id: str, reason: str | None, at: datetime) -> None:
    if reason is None:
        await conn.execute(CLEAR_FLAG_SQL, uuid.UUID(application_id))
    else:
        await conn.execute(SET_FLAG_SQL, uuid.UUID(application_id), reason, at)


async def admins(conn: Db) -> list[str]:
    return [str(r["id"]) for r in await conn.fetch(ADMINS_SQL)]


# --- reads ---------------------------------------------------------------------------------------


def _expected(status: TaskStatus) -> str:
    return {
        TaskStatus.offered: "accept or decline the task",
        TaskStatus.accepted: "submit your review",
    }.get(status, "nothing")


def inbox_item(row: asyncpg.Record, *, with_reviewer: bool) -> InboxItem:
    status = TaskStatus(row["status"])
    return InboxItem(
        task_id=str(row["id"]),
        application_id=str(row["application_id"]),
        title=row["title"],
        specialty=row["specialty"],
        status=status,
        expected=_expected(status),
        deadline=row["deadline"],
        overdue=bool(row["overdue"]) and status.is_open,
        offered_at=row["offered_at"],
        reviewer_id=str(row["reviewer_id"]) if with_reviewer else None,
        reviewer_name=row["reviewer_name"] if with_reviewer else None,
    )


def _cursor(at: datetime | None, row_id: str) -> str:
    return base64.urlsafe_b64encode(
        json.dumps([at.isoformat() if at else None, row_id]).encode()
    ).decode()


def _decode(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    if not cursor:
        return None, None
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc


async def inbox(
    db: Db, reviewer_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[InboxItem], str | None]:
    """A reviewer's open tasks, soonest deadline first, and the next page's cursor."""
    after_at, after_id = _decode(cursor)
    rows = await db.fetch(INBOX_SQL, reviewer_id, after_at, after_id, limit + 1)
    items = [inbox_item(r, with_reviewer=False) for r in rows[:limit]]
    more = len(rows) > limit
    return items, _cursor(items[-1].deadline, items[-1].task_id) if more else None


async def overdue(db: Db, *, cursor: str | None, limit: int) -> tuple[list[InboxItem], str | None]:
    """Every open task past its deadline, the longest overdue first."""
    after_at, after_id = _decode(cursor)
    rows = await db.fetch(OVERDUE_SQL, after_at, after_id, limit + 1)
    items = [inbox_item(r, with_reviewer=True) for r in rows[:limit]]
    more = len(rows) > limit
    return items, _cursor(items[-1].deadline, items[-1].task_id) if more else None


async def task(db: Db, task_id: uuid.UUID) -> asyncpg.Record | None:
    """The task (inbox columns) and its programme's `programme_params`."""
    return await db.fetchrow(TASK_SQL, task_id)


def task_params(row: asyncpg.Record) -> ProgrammeParams:
    """The programme parameters of a row from `task`."""
    return ProgrammeParams.model_validate(json.loads(row["programme_params"]))


def answered(row: asyncpg.Record, task: Task, *, with_reviewer: bool) -> InboxItem:
    """The inbox item after an Update on the task: the row from before it, with the status and
    deadline the Update answered (its write is on record by then), without reading it again."""
    item = inbox_item(row, with_reviewer=with_reviewer)
    deadline = task.deadline
    return item.model_copy(
        update={
            "status": task.status,
            "expected": _expected(task.status),
            "deadline": deadline,
            "overdue": deadline is not None
            and deadline < datetime.now(UTC)
            and task.status.is_open,
        }
    )


async def application_tasks(db: Db, application_id: uuid.UUID) -> list[InboxItem]:
    rows = await db.fetch(APPLICATION_TASKS_SQL, application_id)
    return [inbox_item(r, with_reviewer=True) for r in rows]


async def reviews(db: Db, application_id: uuid.UUID) -> list[tuple[str, ReviewPublic]]:
    """Every submitted review with its reviewer's id; callers decide who sees the name."""
    return [
        (
            str(r["reviewer_id"]),
            ReviewPublic(
                scores=json.loads(r["scores"]),
                score=float(r["score"]),
                recommendation=r["recommendation"],
                comments=r["comments"],
                submitted_at=r["submitted_at"],
                reviewer_name=r["reviewer_name"],
            ),
        )
        for r in await db.fetch(REVIEWS_SQL, application_id)
    ]


async def flagged(
    db: Db, *, cursor: str | None, limit: int
) -> tuple[list[FlaggedApplication], str | None]:
    """Applications waiting for an admin, the longest waiting first."""
    after_at, after_id = _decode(cursor)
    rows = await db.fetch(FLAGGED_SQL, after_at, after_id, limit + 1)
    items = [
        FlaggedApplication(
            application_id=str(r["id"]),
            programme_id=str(r["programme_id"]),
            title=r["title"],
            specialty=r["specialty"],
            stage=r["stage"],
            flag_reason=r["flag_reason"],
            flagged_at=r["flagged_at"],
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return items, _cursor(items[-1].flagged_at, items[-1].application_id) if more else None


async def pick_expert(
    conn: Conn,
    application_id: uuid.UUID,
    specialty: str,
    conflicts: list[str],
    chosen: str | None,
    *,
    independent: bool,
    none_left: str,
) -> tuple[Actor | None, str | None]:
    """An expert for a later stage of an application (pilot evaluator, reports' expert), by
    the review stage's rules: the one an admin `chosen`, if an expert without a conflict of
    interest (and, when `independent`, not one of its reviewers), or else the least loaded
    eligible expert of the specialty. Returns the expert, or None and why."""
    if chosen is None:
        row = await conn.fetchrow(PICK_REVIEWER_SQL, specialty, conflicts, application_id)
        if row is None:
            return None, none_left
    else:
        try:
            user_id = uuid.UUID(chosen)
        except ValueError:
            return None, "no such user"
        row = await conn.fetchrow(CHECK_REVIEWER_SQL, user_id, application_id)
        if row is None:
            return None, "no such user"
        if row["role"] != Role.reviewer.value:
            return None, f"{row['name']} is not an expert"
        if row["institution_id"] in conflicts:
            return None, f"{row['name']} has a conflict of interest: {row['institution_id']}"
        if independent and row["offered_before"]:
            return None, f"{row['name']} reviewed this application: not independent"
    expert = Actor(
        user_id=str(row["id"]),
        role=Role.reviewer,
        name=row["name"],
        institution_id=row["institution_id"],
    )
    return expert, None


@dataclass(frozen=True)
class ClosedTask:
    """A task that ended, with when and why (a reassignment's or a decline's reason)."""

    item: InboxItem
    closed_at: datetime
    reason: str | None


async def closed(db: Db, reviewer_id: uuid.UUID, limit: int) -> list[ClosedTask]:
    """A reviewer's ended tasks, the latest first."""
    return [
        ClosedTask(inbox_item(r, with_reviewer=False), r["updated_at"], r["reason"])
        for r in await db.fetch(CLOSED_SQL, reviewer_id, limit)
    ]


@dataclass(frozen=True)
class ReviewDraft:
    """What a reviewer's rubric form holds, saved as typed."""

    content: dict[str, Any]
    updated_at: datetime | None


async def review_draft(db: Db, task_id: uuid.UUID, reviewer_id: uuid.UUID) -> ReviewDraft:
    row = await db.fetchrow(REVIEW_DRAFT_SQL, task_id, reviewer_id)
    if row is None:
        return ReviewDraft({}, None)
    return ReviewDraft(json.loads(row["content"]), row["updated_at"])


async def save_review_draft(
    db: Db, task_id: uuid.UUID, reviewer_id: uuid.UUID, content: dict[str, Any]
) -> None:
    await db.execute(SAVE_REVIEW_DRAFT_SQL, task_id, reviewer_id, json.dumps(content))
