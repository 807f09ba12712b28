"""The review workflow: one per application under review, a child of its application workflow.

It offers the application to experts until the programme's number of reviews is in, keeps
every task's deadlines (reminder, then expiry and reassignment), flags the application for an
admin when no eligible expert is left, and adds one expert when the scores diverge. Reviewers
and admins act through Updates whose validators refuse bad input before it enters the history.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.review_book import ReviewBook

with workflow.unsafe.imports_passed_through():
    from schemas.admin import ReassignRequest
    from schemas.common import Role
    from schemas.history import WaitingAnswer
    from schemas.notifications import NotificationKind
    from schemas.review import (
        AddReviewerRequest,
        DeclineRequest,
        ExtendRequest,
        ReviewOutcome,
        ReviewRecord,
        ReviewStart,
        ReviewState,
        SubmitRequest,
        Task,
        TaskAction,
        TaskStatus,
    )
    from workflows import review_rules as rules
    from workflows.deadline import sleep_until
    from workflows.review_rules import (
        UNKNOWN_TASK,
        aggregate,
        review_problems,
        weighted_score,
    )

__all__ = ["UNKNOWN_TASK", "ReviewWorkflow", "aggregate", "review_problems", "weighted_score"]


# From this patch on, an admin's reassignment to the next eligible expert offers the task
# before cancelling it (refused when nobody is left); before, the main loop offered it after.
REASSIGN_OFFERS_FIRST = "review-reassign-offers-first"


@workflow.defn(name="Review")
class ReviewWorkflow(ReviewBook):
    """Expert review of one application. Its id is `review-<application uuid>`."""

    @workflow.init
    def __init__(self, start: ReviewStart) -> None:
        super().__init__(start)

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
                            reason=rules.extra_reviewer_reason(
                                spread, self._params.spread_threshold
                            ),
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

    async def _fill(self) -> None:
        """Offer the application for every missing review, unless it waits on an admin."""
        while self._missing() > 0 and self._flag is None:
            replaces = next(iter(self._pending_reassign), None)
            why = self._pending_reassign.pop(replaces) if replaces else None
            async with self._lock:
                offered = await self._offer(reason=why, replaces=replaces)
            if offered is None:
                await self._set_flag(rules.no_expert_flag(self._start.specialty, self._missing()))

    async def _sleep_until_due(self, seen: int) -> None:
        """Sleep until a deadline or reminder falls due, or until something changed since the
        loop last looked (`seen`)."""
        due = rules.next_due(self._open(), self._params.reminder_lead_time)
        if due is not None and due <= workflow.now():
            return
        await sleep_until(due, lambda: self._changes != seen, summary="next review deadline")

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

    # --- reviewers' updates -------------------------------------------------------------------

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
                        rules.extended(self._start.title, request.until, request.reason),
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
                    raise ApplicationError(rules.nobody_to_reassign_to(self._start.specialty, task))
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
                        rules.reassigned(self._start.title, request.reason),
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
        lead, submitted = self._params.reminder_lead_time, self._submitted()
        waiting = [
            rules.waiting_for_task(wid, task, lead, submitted, self._required)
            for task in self._open()
        ]
        if self._flag is not None:
            waiting.append(rules.waiting_for_admins(wid, self._flag))
        return WaitingAnswer(workflow_id=wid, waiting=waiting)
