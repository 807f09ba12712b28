"""The review workflow's book: its tasks and flags, and the writes that record every change
(offers, expiries, reminders, flags) with the notifications they send. The base of
`ReviewWorkflow` (workflows/review.py), which decides when each happens."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import review as acts
    from schemas.common import Actor
    from schemas.notifications import NewNotification, NotificationKind
    from schemas.review import (
        OfferRequest,
        ReviewChange,
        ReviewOutcome,
        ReviewRecord,
        ReviewStart,
        Task,
        TaskAction,
        TaskStatus,
        TaskUpdate,
    )
    from workflows import review_rules as rules
    from workflows.options import write
    from workflows.review_rules import UNKNOWN_TASK, Text

# Its writes below are local activities from this patch on (options.write).
REVIEW_LOCAL_WRITES = "review-local-writes"


class ReviewBook:
    """The tasks of one application's review and their record."""

    def __init__(self, start: ReviewStart) -> None:
        self._start = start
        self._params = start.params
        self._tasks: dict[str, Task] = {}
        self._required = start.params.reviews_required
        self._extra_added = False
        self._flag: str | None = None
        self._version = 0
        self._changes = 0  # every recorded change; the main loop wakes on a new one
        self._outcome: ReviewOutcome | None = None
        self._lock = asyncio.Lock()
        self._pending_reassign: dict[str, str] = {}  # slot freed by task id -> why

    def _submitted(self) -> int:
        return len(self._done())

    def _done(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.status == TaskStatus.submitted]

    def _open(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.status.is_open]

    def _missing(self) -> int:
        return self._required - sum(1 for t in self._tasks.values() if t.status.holds_slot)

    async def _offer(
        self,
        *,
        reviewer_id: str | None = None,
        assigned_by: Actor | None = None,
        reason: str | None = None,
        replaces: str | None = None,
    ) -> Task | None:
        now = workflow.now()
        self._version += 1
        task_id = str(workflow.uuid4())
        offered = await write(
            acts.ReviewActivities.offer_task,
            OfferRequest(
                task_id=task_id,
                version=self._version,
                application_id=self._start.application_id,
                programme_id=self._start.programme_id,
                workflow_id=workflow.info().workflow_id,
                specialty=self._start.specialty,
                title=self._start.title,
                applicant_institution_id=self._start.applicant_institution_id,
                partner_institutions=self._start.partner_institutions,
                offered_at=now,
                accept_by=now + self._params.review_acceptance_window,
                reviewer_id=reviewer_id,
                assigned_by=assigned_by,
                reason=reason,
                replaces=replaces,
            ),
            local_from=REVIEW_LOCAL_WRITES,
        )
        if offered.reviewer is None:
            if reviewer_id is not None:
                raise ApplicationError(offered.refusal or "this reviewer cannot be assigned")
            return None
        task = Task(
            task_id=task_id,
            reviewer_id=offered.reviewer.user_id,
            reviewer_name=offered.reviewer.name,
            status=TaskStatus.offered,
            offered_at=now,
            accept_by=now + self._params.review_acceptance_window,
        )
        self._tasks[task_id] = task
        return task

    def _reminder_at(self, task: Task) -> datetime | None:
        return rules.reminder_at(task, self._params.reminder_lead_time)

    async def _expire(self, task: Task, deadline: datetime) -> None:
        reason = rules.expiry_reason(task, deadline)
        updated = task.model_copy(update={"status": TaskStatus.expired, "reason": reason})
        self._tasks[task.task_id] = updated
        self._pending_reassign[task.task_id] = reason
        text = rules.expired(self._start.title, task, deadline)
        await self._record(
            "review_expired",
            reason=reason,
            task=updated,
            notify=[self._note(updated, NotificationKind.task_expired, "expired", text)],
        )

    async def _remind(self, task: Task, deadline: datetime) -> None:
        updated = task.model_copy(
            update={"reminded": True, "reminders_sent": task.reminders_sent + 1}
        )
        self._tasks[task.task_id] = updated
        suffix = f"reminder-{updated.reminders_sent}"
        text = rules.reminder(self._start.title, task, deadline)
        await self._record(
            "review_reminder",
            task=updated,
            detail={"deadline": deadline.isoformat()},
            notify=[self._note(updated, NotificationKind.reminder, suffix, text)],
        )

    async def _set_flag(self, flag: str) -> None:
        self._flag = flag
        await self._record(
            "review_flagged",
            reason=flag,
            flag=flag,
            notify_admins=NewNotification(
                key=f"{workflow.info().workflow_id}:{self._version + 1}:flagged",
                user_id="admins",
                kind=NotificationKind.flagged,
                subject=rules.flagged(self._start.title),
                body=flag,
                created_at=workflow.now(),
                application_id=self._start.application_id,
            ),
        )

    def _note(self, task: Task, kind: NotificationKind, suffix: str, text: Text) -> NewNotification:
        return NewNotification(
            key=f"task:{task.task_id}:{suffix}:{self._version + 1}",
            user_id=task.reviewer_id,
            kind=kind,
            subject=text.subject,
            body=text.body,
            created_at=workflow.now(),
            application_id=self._start.application_id,
            task_id=task.task_id,
        )

    async def _record(
        self,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        detail: dict[str, object] | None = None,
        task: Task | None = None,
        review: ReviewRecord | None = None,
        flag: str | None = None,
        clear_flag: bool = False,
        cancel_open_tasks: bool = False,
        conflict: bool = False,
        notify: list[NewNotification] | None = None,
        notify_admins: NewNotification | None = None,
    ) -> None:
        self._version += 1
        details: dict[str, object] = dict(detail or {})
        if task is not None:
            details |= {"task_id": task.task_id, "reviewer_id": task.reviewer_id}
        await write(
            acts.ReviewActivities.record_change,
            ReviewChange(
                application_id=self._start.application_id,
                programme_id=self._start.programme_id,
                workflow_id=workflow.info().workflow_id,
                version=self._version,
                kind=kind,
                at=workflow.now(),
                actor=actor,
                reason=reason,
                detail=details,
                task=None
                if task is None
                else TaskUpdate(
                    task_id=task.task_id,
                    status=task.status,
                    due_by=task.due_by,
                    deadline=task.deadline,
                    reason=task.reason,
                    conflict_declared=conflict,
                    reminders_sent=task.reminders_sent,
                ),
                review=review,
                flag=flag,
                clear_flag=clear_flag,
                cancel_open_tasks=cancel_open_tasks,
                notify=notify or [],
                notify_admins=notify_admins,
            ),
            local_from=REVIEW_LOCAL_WRITES,
        )
        self._changes += 1

    def _own_task(self, request: TaskAction, *statuses: TaskStatus) -> Task:
        task = self._tasks.get(request.task_id)
        if task is None:
            raise ApplicationError(UNKNOWN_TASK)
        if task.reviewer_id != request.actor.user_id:
            raise ApplicationError("this review task is not yours")
        if task.status not in statuses:
            raise ApplicationError(f"this review task is {task.status}")
        return task
