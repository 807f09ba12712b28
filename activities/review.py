"""Writes of the review workflow: tasks, reviews, flags, their audit events and notifications."""

from __future__ import annotations

import functools

import structlog
from temporalio import activity

from activities import Recorder, refuses_bad_data
from grantflow.store import Conn, audit, in_transaction, notifications, review
from schemas.common import Actor
from schemas.notifications import NewNotification, NotificationKind
from schemas.review import Offered, OfferRequest, ReviewChange

log = structlog.get_logger(__name__)


class ReviewActivities(Recorder):
    """Bound to the worker's connection pool and notification sender."""

    @activity.defn
    @refuses_bad_data
    async def offer_task(self, request: OfferRequest) -> Offered:
        """Offer the application to the eligible expert with the fewest open tasks (or to the
        admin's choice), with its audit event and the reviewer's notification.

        Idempotent: the task id comes from the workflow; a retry finds the task on record and
        returns the same reviewer, and the event and notification keys are natural keys."""
        reviewer, refusal = await in_transaction(self._pool, functools.partial(_offer, request))
        if reviewer is None:
            return Offered(reviewer=None, refusal=refusal)
        await self._deliver([_offered_key(request)])
        log.info(
            "review offered",
            application_id=request.application_id,
            task_id=request.task_id,
            reviewer_id=reviewer.user_id,
        )
        return Offered(reviewer=reviewer)

    @activity.defn
    @refuses_bad_data
    async def record_change(self, change: ReviewChange) -> None:
        """Write one change of the review stage: the task, the review, the flag, the audit
        event and the notifications, in one transaction; then deliver the notifications.

        Idempotent: the task only moves when its version is below the change's, the review's
        key is its task, the event key is `<workflow id>:<version>`, notifications are keyed,
        and delivery sends each at least once, skipping those marked sent."""
        if _task_only(change):
            # A reviewer's accept (most changes): the task and its event are one statement, a
            # transaction of its own (one round trip instead of four).
            await in_transaction(
                self._pool, functools.partial(_record, change), single_statement=True
            )
        else:
            await self._record(functools.partial(_record, change))
        log.info(
            "review change",
            application_id=change.application_id,
            kind=change.kind,
            version=change.version,
        )


def _offered_key(request: OfferRequest) -> str:
    return f"task:{request.task_id}:offered"


async def _offer(request: OfferRequest, conn: Conn) -> tuple[Actor | None, str | None]:
    """The task, the reviewer's notification and the audit event; returns the reviewer, or
    None and why there is none."""
    reviewer, refusal = await review.offer(conn, request)
    if reviewer is None:
        return None, refusal
    kind = NotificationKind.task_reassigned if request.replaces else NotificationKind.task_offered
    note = NewNotification(
        key=_offered_key(request),
        user_id=reviewer.user_id,
        kind=kind,
        subject=f"Review requested: {request.title}",
        body=(
            f"Please accept or decline by {request.accept_by.isoformat()}."
            + (f" It comes to you because {request.reason}." if request.reason else "")
        ),
        created_at=request.offered_at,
        application_id=request.application_id,
        task_id=request.task_id,
    )
    await notifications.add(conn, [note])
    await audit.append(
        conn,
        event_key=f"{request.workflow_id}:{request.version}",
        workflow_id=request.workflow_id,
        kind="review_offered",
        at=request.offered_at,
        application_id=request.application_id,
        stage="under_review",
        actor=request.assigned_by,
        reason=request.reason,
        detail={
            "task_id": request.task_id,
            "reviewer_id": reviewer.user_id,
            "reviewer_name": reviewer.name,
            "accept_by": request.accept_by.isoformat(),
            **({"replaces": request.replaces} if request.replaces else {}),
        },
    )
    return reviewer, None


def _task_only(change: ReviewChange) -> bool:
    """The change moves one task and writes nothing else but its event."""
    return (
        change.task is not None
        and change.review is None
        and change.flag is None
        and not change.clear_flag
        and not change.cancel_open_tasks
        and not change.notify
        and change.notify_admins is None
    )


async def _record(change: ReviewChange, conn: Conn) -> list[NewNotification]:
    """The change's rows, notifications and audit event; returns the notifications."""
    notes = list(change.notify) + await notifications.copies(
        change.notify_admins, functools.partial(review.admins, conn)
    )
    event = audit.event_args(
        event_key=f"{change.workflow_id}:{change.version}",
        workflow_id=change.workflow_id,
        kind=change.kind,
        at=change.at,
        application_id=change.application_id,
        stage="under_review",
        actor=change.actor,
        reason=change.reason,
        detail=change.detail,
    )
    if change.task is not None:
        await review.update_task_with_event(conn, change.task, change.version, change.at, event)
    else:
        await audit.insert(conn, event)
    if change.review is not None:
        await review.insert_review(conn, change.application_id, change.review)
    if change.flag is not None:
        await review.set_flag(conn, change.application_id, change.flag, change.at)
    elif change.clear_flag:
        await review.set_flag(conn, change.application_id, None, change.at)
    if change.cancel_open_tasks:
        await review.cancel_open_tasks(conn, change.application_id, change.version, change.at)
    await notifications.add(conn, notes)
    return notes
