"""The review workflow: one per application under review, a child of its application workflow.

It offers the application to experts until the programme's number of reviews is in, keeps
every task's deadlines (reminder, then expiry and reassignment), flags the application for an
admin when no eligible expert is left, and adds one expert when the scores diverge. Reviewers
and admins act through Updates whose validators refuse bad input before it enters the history.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import review as acts
    from schemas.admin import ReassignRequest
    from schemas.common import Actor, Role
    from schemas.history import Waiting, WaitingAnswer
    from schemas.notifications import NewNotification, NotificationKind
    from schemas.programme import Criterion
    from schemas.review import (
        AddReviewerRequest,
        DeclineRequest,
        ExtendRequest,
        OfferRequest,
        ReviewChange,
        ReviewCreate,
        ReviewOutcome,
        ReviewRecord,
        ReviewStart,
        ReviewState,
        SubmitRequest,
        Task,
        TaskAction,
        TaskStatus,
        TaskUpdate,
    )
    from workflows.options import write

UNKNOWN_TASK = "no such review task"


def weighted_score(scores: dict[str, int], rubric: list[Criterion]) -> float:
    """One review's score: its criteria's scores weighted by the rubric."""
    total = sum(c.weight for c in rubric)
    return round(sum(scores[c.name] * c.weight for c in rubric) / total, 4)


def aggregate(scores: list[float]) -> tuple[float, float]:
    """The application's score (the mean of its reviews) and their spread (max - min)."""
    return round(sum(scores) / len(scores), 4), round(max(scores) - min(scores), 4)


def review_problems(review: ReviewCreate, rubric: list[Criterion], low: int, high: int) -> str:
    """Everything wrong with a review's scores, in one message ('' when none)."""
    names = [c.name for c in rubric]
    problems = []
    if missing := [n for n in names if n not in review.scores]:
        problems.append(f"missing scores for {', '.join(missing)}")
    if unknown := sorted(set(review.scores) - set(names)):
        problems.append(f"unknown criteria {', '.join(unknown)} (the rubric: {', '.join(names)})")
    if bad := [f"{n}={v}" for n, v in review.scores.items() if n in names and not low <= v <= high]:
        problems.append(f"scores must be integers from {low} to {high}: {', '.join(bad)}")
    return "; ".join(problems)


# Its writes below are local activities from this patch on (options.write).
REVIEW_LOCAL_WRITES = "review-local-writes"
# From this patch on, an admin's reassignment to the next eligible expert offers the task
# before cancelling it (refused when nobody is left); before, the main loop offered it after.
REASSIGN_OFFERS_FIRST = "review-reassign-offers-first"


@workflow.defn(name="Review")
class ReviewWorkflow:
    """Expert review of one application. Its id is `review-<application uuid>`."""

    @workflow.init
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

    @workflow.run
    async def run(self, start: ReviewStart) -> ReviewOutcome:
        """Assign, chase and reassign until the reviews are in; returns the aggregate."""
        try:
            while True:
                seen = self._changes
                await self._fill()
                if self._submitted() >= self._required:
                    score, spread = aggregate([t.score for t in self._done()])  # type: ignore[misc]
                    if spread > self._params.spread_threshold and not self._extra_added:
                        self._extra_added = True
                        self._required += 1
                        await self._record(
                            "review_extra_reviewer",
                            reason=f"the scores differ by {spread:g}, over the programme's "
                            f"threshold of {self._params.spread_threshold:g}: one more expert",
                            detail={"spread": spread},
                        )
                        continue
                    self._outcome = ReviewOutcome(
                        score=score,
                        spread=spread,
                        reviews=self._submitted(),
                        extra_reviewer_added=self._extra_added,
                    )
                    break
                await self._sleep_until_due(seen)
                await self._handle_due()
        except asyncio.CancelledError:
            # The application was withdrawn: close the open tasks so no reviewer keeps
            # working on it, then end as cancelled.
            await self._record(
                "review_cancelled",
                reason="the application left review",
                cancel_open_tasks=True,
            )
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._outcome is not None
        return self._outcome

    # --- the loop -----------------------------------------------------------------------------

    def _submitted(self) -> int:
        return len(self._done())

    def _done(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.status == TaskStatus.submitted]

    def _open(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.status.is_open]

    def _missing(self) -> int:
        return self._required - sum(1 for t in self._tasks.values() if t.status.holds_slot)

    async def _fill(self) -> None:
        """Offer the application for every missing review, unless it waits on an admin."""
        while self._missing() > 0 and self._flag is None:
            replaces = next(iter(self._pending_reassign), None)
            why = self._pending_reassign.pop(replaces) if replaces else None
            async with self._lock:
                offered = await self._offer(reason=why, replaces=replaces)
            if offered is None:
                flag = (
                    f"no eligible {self._start.specialty} expert is left for this application "
                    f"({self._missing()} review(s) missing): add a reviewer by hand"
                )
                await self._set_flag(flag)

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
            REVIEW_LOCAL_WRITES,
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

    async def _sleep_until_due(self, seen: int) -> None:
        """Sleep until a deadline or reminder falls due, or until something changed since the
        loop last looked (`seen`)."""
        due = self._next_due()
        if due is not None and due <= workflow.now():
            return
        timeout = None if due is None else due - workflow.now()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._changes != seen,
                timeout=timeout,
                timeout_summary="next review deadline",
            )

    def _reminder_at(self, task: Task) -> datetime | None:
        deadline = task.deadline
        if deadline is None or task.reminded:
            return None
        at = deadline - self._params.reminder_lead_time
        start = task.offered_at if task.status == TaskStatus.offered else None
        # No reminder when the whole window is shorter than the lead time.
        return None if start is not None and at <= start else at

    def _next_due(self) -> datetime | None:
        times = []
        for task in self._open():
            if task.deadline is not None:
                times.append(task.deadline)
            if (at := self._reminder_at(task)) is not None:
                times.append(at)
        return min(times, default=None)

    async def _handle_due(self) -> None:
        now = workflow.now()
        for task in self._open():
            async with self._lock:
                current = self._tasks[task.task_id]
                deadline = current.deadline
                if not current.status.is_open or deadline is None:
                    continue
                if now >= deadline:
                    await self._expire(current, deadline)
                elif (at := self._reminder_at(current)) is not None and now >= at:
                    await self._remind(current, deadline)

    async def _expire(self, task: Task, deadline: datetime) -> None:
        missed = "accept or decline" if task.status == TaskStatus.offered else "submit the review"
        reason = f"{task.reviewer_name} did not {missed} by {deadline.isoformat()}"
        updated = task.model_copy(update={"status": TaskStatus.expired, "reason": reason})
        self._tasks[task.task_id] = updated
        self._pending_reassign[task.task_id] = reason
        await self._record(
            "review_expired",
            reason=reason,
            task=updated,
            notify=[
                self._note(
                    updated,
                    NotificationKind.task_expired,
                    "expired",
                    f"Review task expired: {self._start.title}",
                    f"You did not {missed} by {deadline.isoformat()}; "
                    "the application has been offered to another expert.",
                )
            ],
        )

    async def _remind(self, task: Task, deadline: datetime) -> None:
        updated = task.model_copy(
            update={"reminded": True, "reminders_sent": task.reminders_sent + 1}
        )
        self._tasks[task.task_id] = updated
        what = "accept or decline" if task.status == TaskStatus.offered else "submit your review"
        await self._record(
            "review_reminder",
            task=updated,
            detail={"deadline": deadline.isoformat()},
            notify=[
                self._note(
                    updated,
                    NotificationKind.reminder,
                    f"reminder-{updated.reminders_sent}",
                    f"Reminder: {what} by {deadline.isoformat()}",
                    f"Please {what} for '{self._start.title}' by {deadline.isoformat()}.",
                )
            ],
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
                subject=f"Needs an admin: {self._start.title}",
                body=flag,
                created_at=workflow.now(),
                application_id=self._start.application_id,
            ),
        )

    # --- writes -------------------------------------------------------------------------------

    def _note(
        self, task: Task, kind: NotificationKind, suffix: str, subject: str, body: str
    ) -> NewNotification:
        return NewNotification(
            key=f"task:{task.task_id}:{suffix}:{self._version + 1}",
            user_id=task.reviewer_id,
            kind=kind,
            subject=subject,
            body=body,
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
            REVIEW_LOCAL_WRITES,
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
        )
        self._changes += 1

    # --- reviewers' updates -------------------------------------------------------------------

    def _own_task(self, request: TaskAction, *statuses: TaskStatus) -> Task:
        task = self._tasks.get(request.task_id)
        if task is None:
            raise ApplicationError(UNKNOWN_TASK)
        if task.reviewer_id != request.actor.user_id:
            raise ApplicationError("this review task is not yours")
        if task.status not in statuses:
            raise ApplicationError(f"this review task is {task.status}")
        return task

    @workflow.update
    async def accept(self, request: TaskAction) -> Task:
        """The reviewer takes the task: the review deadline starts now."""
        async with self._lock:
            task = self._own_task(request, TaskStatus.offered)
            due = workflow.now() + self._params.review_deadline
            updated = task.model_copy(
                update={"status": TaskStatus.accepted, "due_by": due, "reminded": False}
            )
            self._tasks[task.task_id] = updated
            await self._record(
                "review_accepted",
                actor=request.actor,
                task=updated,
                detail={"due_by": due.isoformat()},
            )
            return updated

    @accept.validator
    def _validate_accept(self, request: TaskAction) -> None:
        self._own_task(request, TaskStatus.offered)

    @workflow.update
    async def decline(self, request: DeclineRequest) -> Task:
        """The reviewer declines, with a reason; the task goes to the next eligible expert.
        A declared conflict of interest is recorded as such."""
        async with self._lock:
            task = self._own_task(request, TaskStatus.offered, TaskStatus.accepted)
            why = ("conflict of interest: " if request.conflict_of_interest else "") + (
                request.reason
            )
            updated = task.model_copy(update={"status": TaskStatus.declined, "reason": why})
            self._tasks[task.task_id] = updated
            self._pending_reassign[task.task_id] = f"{task.reviewer_name} declined: {why}"
            await self._record(
                "review_declined",
                actor=request.actor,
                reason=why,
                task=updated,
                detail={"conflict_of_interest": request.conflict_of_interest},
                conflict=request.conflict_of_interest,
            )
            return updated

    @decline.validator
    def _validate_decline(self, request: DeclineRequest) -> None:
        self._own_task(request, TaskStatus.offered, TaskStatus.accepted)

    @workflow.update
    async def submit(self, request: SubmitRequest) -> Task:
        """The reviewer's review: scores for every criterion, a recommendation, comments."""
        async with self._lock:
            task = self._own_task(request, TaskStatus.accepted)
            score = weighted_score(request.review.scores, self._params.rubric)
            updated = task.model_copy(
                update={
                    "status": TaskStatus.submitted,
                    "score": score,
                    "recommendation": request.review.recommendation,
                }
            )
            self._tasks[task.task_id] = updated
            await self._record(
                "review_submitted",
                actor=request.actor,
                task=updated,
                detail={"recommendation": request.review.recommendation.value},
                review=ReviewRecord(
                    task_id=task.task_id,
                    reviewer_id=task.reviewer_id,
                    scores=request.review.scores,
                    score=score,
                    recommendation=request.review.recommendation,
                    comments=request.review.comments,
                    submitted_at=workflow.now(),
                ),
            )
            return updated

    @submit.validator
    def _validate_submit(self, request: SubmitRequest) -> None:
        task = self._tasks.get(request.task_id)
        if task is not None and task.status == TaskStatus.submitted:
            raise ApplicationError("this review has already been submitted")
        if task is not None and task.status == TaskStatus.offered:
            raise ApplicationError("accept the task before submitting a review")
        self._own_task(request, TaskStatus.accepted)
        p = self._params
        if problems := review_problems(request.review, p.rubric, p.score_min, p.score_max):
            raise ApplicationError(problems)

    # --- admins' updates ----------------------------------------------------------------------

    @workflow.update
    async def add_reviewer(self, request: AddReviewerRequest) -> Task:
        """An admin offers the application to a chosen reviewer (clears a flag). The activity
        refuses a reviewer who is not one, or who has a conflict of interest."""
        async with self._lock:
            extra = self._missing() <= 0
            task = await self._offer(
                reviewer_id=request.reviewer_id, assigned_by=request.actor, reason=request.reason
            )
            assert task is not None  # _offer raises when the chosen reviewer is refused
            if extra:
                self._required += 1
            self._flag = None
            await self._record(
                "review_reviewer_added",
                actor=request.actor,
                reason=request.reason,
                task=task,
                clear_flag=True,
            )
            return task

    @add_reviewer.validator
    def _validate_add_reviewer(self, request: AddReviewerRequest) -> None:
        if request.actor.role != Role.admin:
            raise ApplicationError("only an admin can add a reviewer")
        if any(t.reviewer_id == request.reviewer_id for t in self._tasks.values()):
            raise ApplicationError("this reviewer has already been offered this application")
        if self._outcome is not None:
            raise ApplicationError("the review is complete")

    @workflow.update
    async def extend_deadline(self, request: ExtendRequest) -> Task:
        """An admin moves a task's current deadline later; a new reminder goes out before it."""
        async with self._lock:
            task = self._tasks[request.task_id]
            field = "accept_by" if task.status == TaskStatus.offered else "due_by"
            updated = task.model_copy(update={field: request.until, "reminded": False})
            self._tasks[task.task_id] = updated
            await self._record(
                "review_deadline_extended",
                actor=request.actor,
                reason=request.reason,
                task=updated,
                detail={"until": request.until.isoformat()},
                notify=[
                    self._note(
                        updated,
                        NotificationKind.deadline_extended,
                        "extended",
                        f"New deadline: {request.until.isoformat()}",
                        f"An admin extended your deadline for '{self._start.title}' to "
                        f"{request.until.isoformat()}: {request.reason}",
                    )
                ],
            )
            return updated

    @extend_deadline.validator
    def _validate_extend(self, request: ExtendRequest) -> None:
        if request.actor.role != Role.admin:
            raise ApplicationError("only an admin can extend a deadline")
        task = self._tasks.get(request.task_id)
        if task is None:
            raise ApplicationError(UNKNOWN_TASK)
        if task.deadline is None:
            raise ApplicationError(f"this review task is {task.status}: it has no deadline")
        if request.until <= max(task.deadline, workflow.now()):
            raise ApplicationError(
                f"the new deadline must be later than the current one ({task.deadline.isoformat()})"
            )

    @workflow.update
    async def reassign(self, request: ReassignRequest) -> Task:
        """An admin takes an open task away from its reviewer (who is told why): to the
        reviewer named, or to the next eligible expert by the usual matching. Refused, with
        nothing changed, when the named reviewer cannot take it or nobody eligible is left.
        Returns the task now holding the slot."""
        async with self._lock:
            task = self._tasks[request.task_id]
            why = f"reassigned by an admin: {request.reason}"
            offered = None
            if request.reviewer_id is not None:
                offered = await self._offer(
                    reviewer_id=request.reviewer_id,
                    assigned_by=request.actor,
                    reason=request.reason,
                    replaces=task.task_id,
                )
            elif workflow.patched(REASSIGN_OFFERS_FIRST):
                # The next expert is found before the task is taken away: when nobody is left,
                # the refusal leaves the reviewer working and nothing on record.
                offered = await self._offer(reason=why, replaces=task.task_id)
                if offered is None:
                    raise ApplicationError(
                        f"no eligible {self._start.specialty} expert is left to take this task "
                        f"over: it stays with {task.reviewer_name}"
                    )
            cancelled = task.model_copy(update={"status": TaskStatus.cancelled, "reason": why})
            self._tasks[task.task_id] = cancelled
            if offered is None:
                self._pending_reassign[task.task_id] = why
            await self._record(
                "review_reassigned",
                actor=request.actor,
                reason=request.reason,
                task=cancelled,
                detail={"to": offered.reviewer_id} if offered else {},
                notify=[
                    self._note(
                        cancelled,
                        NotificationKind.task_reassigned,
                        "reassigned",
                        f"Review task withdrawn: {self._start.title}",
                        f"An admin gave this review to another expert: {request.reason}",
                    )
                ],
            )
            return offered or cancelled

    @reassign.validator
    def _validate_reassign(self, request: ReassignRequest) -> None:
        if request.actor.role != Role.admin:
            raise ApplicationError("only an admin can reassign a review")
        task = self._tasks.get(request.task_id)
        if task is None:
            raise ApplicationError(UNKNOWN_TASK)
        if not task.status.is_open:
            raise ApplicationError(f"this review task is {task.status}: nothing to reassign")
        if request.reviewer_id is not None and any(
            t.reviewer_id == request.reviewer_id for t in self._tasks.values()
        ):
            raise ApplicationError("this reviewer has already been offered this application")
        if self._outcome is not None:
            raise ApplicationError("the review is complete")

    @workflow.query
    def state(self) -> ReviewState:
        """Tasks with their reviewers and deadlines, progress, and any flag (for admins)."""
        return ReviewState(
            application_id=self._start.application_id,
            required=self._required,
            submitted=self._submitted(),
            tasks=list(self._tasks.values()),
            flag=self._flag,
            outcome=self._outcome,
        )

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """Each open task's reviewer, what they must do and by when (a missed deadline offers
        the application to another expert), and the admins when the application is flagged."""
        wid = workflow.info().workflow_id
        waiting = []
        for task in self._open():
            offered = task.status == TaskStatus.offered
            reminder = self._reminder_at(task)
            otherwise = "the task expires and the application is offered to another expert"
            if reminder is not None:
                otherwise = f"a reminder at {reminder.isoformat()}, then {otherwise}"
            waiting.append(
                Waiting(
                    workflow_id=wid,
                    who=f"reviewer {task.reviewer_name}",
                    user_ids=[task.reviewer_id],
                    what=(
                        "accept or decline the review task"
                        if offered
                        else f"submit the review ({self._submitted()} of {self._required} in)"
                    ),
                    by=task.deadline,
                    otherwise=otherwise,
                )
            )
        if self._flag is not None:
            waiting.append(
                Waiting(
                    workflow_id=wid,
                    who="admins",
                    what=self._flag,
                    otherwise="the application stays in review, flagged",
                )
            )
        return WaitingAnswer(workflow_id=wid, waiting=waiting)
