"""The agreement workflow: a child of an approved application's workflow.

The applicant accepts the agreement within the programme's window, or the approval lapses and
its money returns to the budget. On acceptance the first tranche is paid; each later tranche
falls due a `tranche_interval` after the previous one and is paid only once every report due
before it has been accepted (held back, visibly, until then).

From acceptance the project owes a progress report every `report_interval`, a financial report
every `financial_report_interval` and a final report at its end; each gets a reminder
`reminder_lead_time` before its deadline and escalates to the admins when the deadline passes.
An admin, or the expert an admin assigned to the project's reports, accepts or returns them.
The final report's acceptance closes the project (implemented or not) and returns what was not
paid out; so does a stop decided on the pilot. A project lives for years: the workflow
continues as new after `continue_as_new_after` changes (or when Temporal suggests it),
carrying its state, never in the middle of an update.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import agreement as acts
    from schemas.admin import DeadlineRequest
    from schemas.agreement import (
        AgreementAction,
        AgreementCarry,
        AgreementChange,
        AgreementOutcome,
        AgreementStart,
        AgreementState,
        AgreementStatus,
        AgreementStop,
        ProjectOutcome,
        Report,
        ReportKind,
        ReportReview,
        ReportReviewerAssignment,
        ReportReviewerFound,
        ReportReviewerRequest,
        ReportStatus,
        ReportSubmission,
        Tranche,
        TrancheStatus,
    )
    from schemas.common import Actor, Role
    from schemas.council import Reservation
    from schemas.history import Waiting, WaitingAnswer
    from schemas.notifications import NewNotification, NotificationKind
    from workflows.options import MIN_WAIT, WRITE_RETRY, WRITE_TIMEOUT


def split(amount: int, parts: int) -> list[int]:
    """`amount` in `parts` tranches as equal as roubles allow; the first takes the remainder."""
    base, rest = divmod(amount, parts)
    return [base + rest, *([base] * (parts - 1))]


def tranche_count(duration_months: int) -> int:
    """One tranche per project year."""
    return max(1, -(-duration_months // 12))


def report_schedule(accepted_at: datetime, start: AgreementStart) -> list[Report]:
    """Progress reports every `report_interval` and financial reports every
    `financial_report_interval` until the project's end (one `tranche_interval` per project
    year), then the final report at the end; numbered in deadline order (progress first on a
    shared date)."""
    params = start.params
    end = accepted_at + params.tranche_interval * tranche_count(start.duration_months)
    dues: list[tuple[datetime, int, ReportKind]] = []
    cadences = [(params.report_interval, ReportKind.progress)]
    if params.financial_report_interval:
        cadences.append((params.financial_report_interval, ReportKind.financial))
    for order, (interval, kind) in enumerate(cadences):
        due = accepted_at + interval
        while due < end:
            dues.append((due, order, kind))
            due += interval
    reports = [
        Report(seq=i + 1, due_at=due, status=ReportStatus.due, kind=kind)
        for i, (due, _, kind) in enumerate(sorted(dues))
    ]
    reports.append(
        Report(
            seq=len(reports) + 1,
            due_at=end,
            status=ReportStatus.due,
            final=True,
            kind=ReportKind.final,
        )
    )
    return reports


def report_name(report: Report) -> str:
    """How notifications name a report: "final report", "financial report 4"."""
    return "final report" if report.final else f"{report.kind.value} report {report.seq}"


@workflow.defn(name="Agreement")
class AgreementWorkflow:
    """An approved project's agreement and funding. Its id is `agreement-<application uuid>`."""

    @workflow.init
    def __init__(self, start: AgreementStart) -> None:
        self._start = start
        now = workflow.now()
        self._state = AgreementState(
            application_id=start.application_id,
            amount_rub=start.amount_rub,
            status=AgreementStatus.offered,
            offered_at=now,
            accept_by=now + start.params.agreement_window,
            accepted_at=None,
            tranches=[
                Tranche(seq=i + 1, amount_rub=a, due_at=None, status=TrancheStatus.scheduled)
                for i, a in enumerate(split(start.amount_rub, tranche_count(start.duration_months)))
            ],
            reports=[],
            disbursed_rub=0,
        )
        self._version = 0
        self._answer: AgreementAction | None = None
        self._decided = False  # the applicant's answer is fully on record
        if start.carried is not None:
            self._state, self._version = start.carried.state, start.carried.version
            self._decided = True
        self._changes = 0  # this run's changes: the continue-as-new threshold counts them
        self._stop: AgreementStop | None = None
        self._ending: AgreementStop | None = None
        self._outcome_of_project: ProjectOutcome | None = None
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, start: AgreementStart) -> AgreementOutcome:
        """Offer, wait for the applicant, then pay the tranches as their reports come in,
        until the final report closes the project."""
        try:
            if start.carried is None:
                await self._record("agreement_offered")
                if not await self._await_answer():
                    await self._end(AgreementStatus.lapsed, "not accepted by the deadline")
                    return self._outcome()
                await workflow.wait_condition(lambda: self._decided)
            if self._state.status != AgreementStatus.accepted:
                return self._outcome()
            await self._fund_and_report()
        except asyncio.CancelledError:
            # Histories from before the `ending` signal were all withdrawals.
            why = self._ending.reason if self._ending else "the application was withdrawn"
            await self._end(AgreementStatus.cancelled, why)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._outcome()

    async def _await_answer(self) -> bool:
        """Until the applicant answers (True) or the window closes (False); an admin's
        extension moves `accept_by`, and the wait starts over with it."""
        while (answered := await self._answer_by(self._state.accept_by)) is None:
            pass
        return answered

    async def _answer_by(self, by: datetime) -> bool | None:
        """True: answered; False: `by` passed; None: an admin moved the deadline."""
        try:
            await workflow.wait_condition(
                lambda: self._answer is not None or self._state.accept_by != by,
                timeout=max(by - workflow.now(), MIN_WAIT),
                timeout_summary="agreement acceptance window",
            )
        except TimeoutError:
            return False
        return True if self._answer is not None else None

    async def _fund_and_report(self) -> None:
        """Wake at each reminder, deadline and tranche date, and at every change."""
        while self._state.status == AgreementStatus.accepted:
            if self._changes >= self._start.params.continue_as_new_after or (
                workflow.info().is_continue_as_new_suggested()
            ):
                await self._continue_as_new()
            async with self._lock:
                await self._step()
            if self._state.status != AgreementStatus.accepted:
                return
            await self._sleep(self._changes, self._next_deadline())

    async def _sleep(self, changes: int, wake: datetime | None) -> None:
        """Until `wake`, a change after the `changes`-th, or a stop."""
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._changes != changes or self._stop is not None,
                timeout=None if wake is None else max(wake - workflow.now(), MIN_WAIT),
                timeout_summary="next report or tranche deadline",
            )

    async def _continue_as_new(self) -> None:
        # Updates in progress finish here first; the state they leave is what is carried.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new after %s changes", self._changes)
        workflow.continue_as_new(
            self._start.model_copy(
                update={"carried": AgreementCarry(state=self._state, version=self._version)}
            )
        )

    async def _step(self) -> None:
        """Do what is due now: reminders, escalations, tranches, the close."""
        if self._stop is not None:
            self._outcome_of_project = ProjectOutcome.not_implemented
            await self._end(AgreementStatus.stopped, self._stop.reason)
            return
        now = workflow.now()
        lead = self._start.params.reminder_lead_time
        for report in self._state.reports:
            open_ = report.status in (ReportStatus.due, ReportStatus.returned)
            if open_ and not report.reminded and now >= report.due_at - lead:
                self._put_report(report.model_copy(update={"reminded": True}))
                await self._record(
                    "report_reminder", detail=f"report {report.seq}", notify=self._reminder(report)
                )
            if report.status == ReportStatus.due and not report.overdue and now >= report.due_at:
                self._put_report(self._report(report.seq).model_copy(update={"overdue": True}))
                await self._record(
                    "report_overdue",
                    reason=f"report {report.seq} was due {report.due_at.isoformat()}",
                    notify_admins=self._overdue(report),
                )
        for tranche in self._state.tranches:
            if tranche.status not in (TrancheStatus.scheduled, TrancheStatus.held):
                continue
            if tranche.due_at is None or tranche.due_at > now:
                break
            blocking = [
                r.seq
                for r in self._state.reports
                if r.due_at <= tranche.due_at and r.status != ReportStatus.accepted
            ]
            if not blocking:
                await self._pay(tranche.seq)
                continue
            reason = f"report {blocking[0]} is not accepted yet"
            if tranche.held_reason != reason:
                self._set_tranche(tranche.seq, status=TrancheStatus.held, held_reason=reason)
                await self._record("tranche_held", reason=reason)
            break  # tranches are paid in order
        if self._outcome_of_project is not None:
            await self._end(AgreementStatus.completed, f"project {self._outcome_of_project}")

    def _next_deadline(self) -> datetime | None:
        lead = self._start.params.reminder_lead_time
        times = [
            t.due_at
            for t in self._state.tranches
            if t.status == TrancheStatus.scheduled and t.due_at is not None
        ]
        for r in self._state.reports:
            if r.status in (ReportStatus.due, ReportStatus.returned) and not r.reminded:
                times.append(r.due_at - lead)
            if r.status == ReportStatus.due and not r.overdue:
                times.append(r.due_at)
        return min(times, default=None)

    def _reminder(self, report: Report) -> list[NewNotification]:
        what = report_name(report)
        return [
            NewNotification(
                key=f"{self._start.application_id}:report:{report.seq}:reminder",
                user_id=self._start.applicant.user_id,
                kind=NotificationKind.reminder,
                subject=f"Your {what} is due: {self._start.title}",
                body=f"Please submit it by {report.due_at.isoformat()}.",
                created_at=workflow.now(),
                application_id=self._start.application_id,
            )
        ]

    def _overdue(self, report: Report) -> NewNotification:
        return NewNotification(
            key=f"{self._start.application_id}:report:{report.seq}:overdue",
            user_id=self._start.applicant.user_id,  # replaced by each admin's id
            kind=NotificationKind.report_overdue,
            subject=f"{report_name(report).capitalize()} overdue: {self._start.title}",
            body=f"It was due {report.due_at.isoformat()} and has not been submitted.",
            created_at=workflow.now(),
            application_id=self._start.application_id,
        )

    def _outcome(self) -> AgreementOutcome:
        return AgreementOutcome(
            status=self._state.status,
            disbursed_rub=self._state.disbursed_rub,
            project_outcome=self._outcome_of_project,
        )

    def _set_tranche(self, seq: int, **changes: object) -> None:
        tranches = list(self._state.tranches)
        tranches[seq - 1] = tranches[seq - 1].model_copy(update=changes)
        self._state = self._state.model_copy(update={"tranches": tranches})

    async def _pay(self, seq: int) -> None:
        tranche = self._state.tranches[seq - 1]
        await workflow.execute_activity_method(
            acts.AgreementActivities.disburse,
            self._money(f"tranche:{seq}", tranche.amount_rub, f"tranche {seq}"),
            start_to_close_timeout=WRITE_TIMEOUT,
            retry_policy=WRITE_RETRY,
        )
        self._set_tranche(
            seq, status=TrancheStatus.released, held_reason=None, released_at=workflow.now()
        )
        self._state = self._state.model_copy(
            update={"disbursed_rub": self._state.disbursed_rub + tranche.amount_rub}
        )
        await self._record("tranche_released", detail=f"tranche {seq}: {tranche.amount_rub} RUB")

    async def _end(self, status: AgreementStatus, reason: str) -> None:
        """Lapse, decline, cancel, stop or close: what is not paid out goes back to the
        budget."""
        tranches = [
            t
            if t.status == TrancheStatus.released
            else t.model_copy(update={"status": TrancheStatus.cancelled})
            for t in self._state.tranches
        ]
        self._state = self._state.model_copy(update={"status": status, "tranches": tranches})
        await workflow.execute_activity_method(
            acts.AgreementActivities.release_unspent,
            self._money(f"release:{status.value}", self._start.amount_rub, reason),
            start_to_close_timeout=WRITE_TIMEOUT,
            retry_policy=WRITE_RETRY,
        )
        await self._record(f"agreement_{status.value}", reason=reason)

    def _money(self, key: str, amount: int, reason: str) -> Reservation:
        return Reservation(
            key=f"{workflow.info().workflow_id}:{key}",
            programme_id=self._start.programme_id,
            application_id=self._start.application_id,
            amount_rub=amount,
            reason=reason,
            at=workflow.now(),
        )

    async def _record(
        self,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        detail: str | None = None,
        notify: list[NewNotification] | None = None,
        notify_admins: NewNotification | None = None,
    ) -> None:
        self._version += 1
        await workflow.execute_activity_method(
            acts.AgreementActivities.record_agreement,
            AgreementChange(
                version=self._version,
                kind=kind,
                at=workflow.now(),
                state=self._state,
                programme_id=self._start.programme_id,
                workflow_id=workflow.info().workflow_id,
                actor=actor,
                reason=reason or detail,
                notify=notify or [],
                notify_admins=notify_admins,
            ),
            start_to_close_timeout=WRITE_TIMEOUT,
            retry_policy=WRITE_RETRY,
        )
        self._changes += 1

    async def _tell_parent(self, signal: str) -> None:
        parent = workflow.info().parent
        if parent is not None:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(signal)

    # --- the applicant's updates --------------------------------------------------------------

    @workflow.update
    async def accept(self, action: AgreementAction) -> AgreementState:
        """The applicant accepts: the tranche schedule starts now and the first is paid."""
        self._answer = action
        now = workflow.now()
        interval = self._start.params.tranche_interval
        async with self._lock:
            tranches = [
                t.model_copy(update={"due_at": now + interval * i})
                for i, t in enumerate(self._state.tranches)
            ]
            reports = report_schedule(now, self._start)
            self._state = self._state.model_copy(
                update={
                    "status": AgreementStatus.accepted,
                    "accepted_at": now,
                    "tranches": tranches,
                    "reports": reports,
                }
            )
            await self._record("agreement_accepted", actor=action.actor)
            await self._tell_parent("agreement_accepted")
            await self._pay(1)
        self._decided = True
        return self._state

    @accept.validator
    def _validate_accept(self, action: AgreementAction) -> None:
        self._check_applicant(action.actor)

    @workflow.update
    async def decline(self, action: AgreementAction) -> AgreementState:
        """The applicant declines the agreement; the approved amount returns to the budget."""
        self._answer = action
        async with self._lock:
            await self._end(AgreementStatus.declined, action.reason or "declined by the applicant")
        self._decided = True
        return self._state

    @decline.validator
    def _validate_decline(self, action: AgreementAction) -> None:
        self._check_applicant(action.actor)

    def _check_applicant(self, actor: Actor) -> None:
        if actor.user_id != self._start.applicant.user_id:
            raise ApplicationError("only the applicant can answer the agreement")
        if self._state.status != AgreementStatus.offered or self._answer is not None:
            raise ApplicationError(f"the agreement is {self._state.status}")

    @workflow.update
    async def submit_report(self, submission: ReportSubmission) -> Report:
        """The applicant sends a progress report (again, after it was returned)."""
        async with self._lock:
            report = self._report(submission.seq).model_copy(
                update={"status": ReportStatus.submitted, "body": submission.body, "comment": None}
            )
            self._put_report(report)
            await self._record(
                "report_submitted", actor=submission.actor, detail=f"report {submission.seq}"
            )
            return report

    @submit_report.validator
    def _validate_submit_report(self, submission: ReportSubmission) -> None:
        if submission.actor.user_id != self._start.applicant.user_id:
            raise ApplicationError("only the applicant can submit reports")
        if self._state.status != AgreementStatus.accepted:
            raise ApplicationError(f"the agreement is {self._state.status}")
        status = self._report(submission.seq).status
        if status not in (ReportStatus.due, ReportStatus.returned):
            raise ApplicationError(f"report {submission.seq} is {status}")

    @workflow.update
    async def assign_report_reviewer(self, assignment: ReportReviewerAssignment) -> AgreementState:
        """An admin assigns an expert to accept or return the project's reports (replacing any
        earlier one): the expert named, or the least loaded eligible one, by the review stage's
        matching and conflict rules."""
        async with self._lock:
            found: ReportReviewerFound = await workflow.execute_activity_method(
                acts.AgreementActivities.find_report_reviewer,
                ReportReviewerRequest(
                    application_id=self._start.application_id, reviewer_id=assignment.reviewer_id
                ),
                start_to_close_timeout=WRITE_TIMEOUT,
                retry_policy=WRITE_RETRY,
            )
            if found.reviewer is None:
                raise ApplicationError(found.refusal or "not eligible")
            expert = found.reviewer
            self._state = self._state.model_copy(update={"report_reviewer": expert})
            note = NewNotification(
                key=f"{self._start.application_id}:reports:reviewer:{self._version + 1}",
                user_id=expert.user_id,
                kind=NotificationKind.reports_assigned,
                subject=f"You review the reports of: {self._start.title}",
                body="Accept each submitted report, or return it with a comment.",
                created_at=workflow.now(),
                application_id=self._start.application_id,
            )
            await self._record(
                "report_reviewer_assigned",
                actor=assignment.actor,
                reason=f"{assignment.reason} (expert: {expert.name})",
                notify=[note],
            )
        return self._state

    @assign_report_reviewer.validator
    def _validate_assign_report_reviewer(self, assignment: ReportReviewerAssignment) -> None:
        if assignment.actor.role != Role.admin:
            raise ApplicationError("only an admin can assign an expert to the reports")
        if self._state.status not in (AgreementStatus.offered, AgreementStatus.accepted):
            raise ApplicationError(f"the agreement is {self._state.status}")

    @workflow.update
    async def review_report(self, review: ReportReview) -> Report:
        """An admin (or the expert assigned to the reports) accepts a report (paying a tranche
        it held back) or returns it for changes. Accepting the final report closes the project
        as implemented or not."""
        async with self._lock:
            status = ReportStatus.accepted if review.accept else ReportStatus.returned
            report = self._report(review.seq).model_copy(
                update={"status": status, "comment": review.comment}
            )
            self._put_report(report)
            await self._record(f"report_{status.value}", actor=review.actor, reason=review.comment)
            if report.final and review.accept:
                self._outcome_of_project = review.outcome
            return report

    @review_report.validator
    def _validate_review_report(self, review: ReportReview) -> None:
        expert = self._state.report_reviewer
        assigned = expert is not None and review.actor.user_id == expert.user_id
        if review.actor.role != Role.admin and not assigned:
            raise ApplicationError("only an admin or the assigned expert can review a report")
        report = self._report(review.seq)
        if report.status != ReportStatus.submitted:
            raise ApplicationError(f"report {review.seq} is {report.status}, not submitted")
        if not (report.final and review.accept):
            if review.outcome is not None:
                raise ApplicationError("only accepting the final report sets the outcome")
            return
        if review.outcome is None:
            raise ApplicationError("accepting the final report needs the project's outcome")
        if waiting := [r.seq for r in self._state.reports[:-1] if r.status != "accepted"]:
            raise ApplicationError(f"report {waiting[0]} must be accepted before the final one")

    @workflow.update
    async def extend_deadline(self, request: DeadlineRequest) -> AgreementState:
        """An admin moves a deadline later, with a reason: report `seq`'s (it leaves the overdue
        list and is reminded again before the new one), or without `seq` the applicant's window
        to accept the agreement."""
        async with self._lock:
            if request.seq is None:
                self._state = self._state.model_copy(update={"accept_by": request.until})
                kind, what = "agreement_deadline_extended", "the agreement's acceptance"
            else:
                lead = self._start.params.reminder_lead_time
                self._put_report(
                    self._report(request.seq).model_copy(
                        update={
                            "due_at": request.until,
                            "overdue": False,
                            "reminded": workflow.now() >= request.until - lead,
                        }
                    )
                )
                kind, what = "report_deadline_extended", f"report {request.seq}"
            await self._record(
                kind,
                actor=request.actor,
                reason=f"{what} moved to {request.until.isoformat()}: {request.reason}",
            )
        return self._state

    @extend_deadline.validator
    def _validate_extend_deadline(self, request: DeadlineRequest) -> None:
        if request.actor.role != Role.admin:
            raise ApplicationError("only an admin can extend a deadline")
        if request.seq is None:
            if self._state.status != AgreementStatus.offered or self._answer is not None:
                raise ApplicationError(f"the agreement is {self._state.status}, not offered")
            current = self._state.accept_by
        else:
            if self._state.status != AgreementStatus.accepted:
                raise ApplicationError(f"the agreement is {self._state.status}")
            report = self._report(request.seq)
            if report.status not in (ReportStatus.due, ReportStatus.returned):
                raise ApplicationError(f"report {request.seq} is {report.status}")
            current = report.due_at
        if request.until <= max(current, workflow.now()):
            raise ApplicationError(
                f"the new deadline must be later than the current one ({current.isoformat()})"
            )

    @workflow.signal
    def ending(self, why: AgreementStop) -> None:
        """The application is ending early (withdrawn, or cancelled by an admin): the reason the
        cancellation that follows records, in the ledger's release entry too."""
        self._ending = why

    @workflow.signal
    def stop(self, stop: AgreementStop) -> None:
        """The pilot's decision stopped the project: unpaid tranches are cancelled and the
        money returns to the budget."""
        self._stop = stop

    def _report(self, seq: int) -> Report:
        if not 1 <= seq <= len(self._state.reports):
            raise ApplicationError(f"there is no report {seq}")
        return self._state.reports[seq - 1]

    def _put_report(self, report: Report) -> None:
        reports = list(self._state.reports)
        reports[report.seq - 1] = report
        self._state = self._state.model_copy(update={"reports": reports})

    @workflow.query
    def state(self) -> AgreementState:
        """The agreement: status, tranches (paid, held and why), reports."""
        return self._state

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """The applicant's answer to the offer, then the reports: the next one due and every
        overdue one (the applicant's), and every submitted one (the report reviewer's or the
        admins'), each with what its lateness costs."""
        wid = workflow.info().workflow_id
        state, applicant = self._state, self._start.applicant
        if state.status == AgreementStatus.offered:
            offer = Waiting(
                workflow_id=wid,
                who=f"applicant {applicant.name}",
                user_ids=[applicant.user_id],
                what="accept or decline the agreement",
                by=state.accept_by,
                otherwise="the approval lapses and its money returns to the budget",
            )
            return WaitingAnswer(workflow_id=wid, waiting=[offer])
        if state.status != AgreementStatus.accepted:
            return WaitingAnswer(workflow_id=wid)
        submitted = [r for r in state.reports if r.status == ReportStatus.submitted]
        waiting = [self._waiting_for_review(wid, r) for r in submitted]
        owed = [r for r in state.reports if r.status in (ReportStatus.due, ReportStatus.returned)]
        for report in [r for r in owed if r.overdue] or owed[:1]:
            waiting.append(self._waiting_for_report(wid, report))
        return WaitingAnswer(workflow_id=wid, waiting=waiting)

    def _waiting_for_report(self, wid: str, report: Report) -> Waiting:
        applicant, lead = self._start.applicant, self._start.params.reminder_lead_time
        held = self._held_by(report)
        if report.overdue:
            otherwise = "it is overdue and escalated to the admins"
        elif report.reminded:
            otherwise = "once late it is escalated to the admins"
        else:
            otherwise = (
                f"a reminder at {(report.due_at - lead).isoformat()}; once late it is "
                "escalated to the admins"
            )
        if held:
            otherwise += f"; tranche {held} stays held until it is accepted"
        returned = report.status == ReportStatus.returned
        again = f" again (returned: {report.comment})" if returned else ""
        return Waiting(
            workflow_id=wid,
            who=f"applicant {applicant.name}",
            user_ids=[applicant.user_id],
            what=f"submit the {report_name(report)}{again}",
            by=report.due_at,
            otherwise=otherwise,
        )

    def _waiting_for_review(self, wid: str, report: Report) -> Waiting:
        reviewer = self._state.report_reviewer
        held = self._held_by(report)
        return Waiting(
            workflow_id=wid,
            who=f"report reviewer {reviewer.name} or an admin" if reviewer else "admins",
            user_ids=[reviewer.user_id] if reviewer else [],
            what=f"accept or return the {report_name(report)}",
            otherwise=f"tranche {held} stays held" if held else "the report waits",
        )

    def _held_by(self, report: Report) -> int | None:
        """The first unpaid tranche this report holds back, if any."""
        for tranche in self._state.tranches:
            if tranche.status in (TrancheStatus.scheduled, TrancheStatus.held) and (
                tranche.due_at is not None and report.due_at <= tranche.due_at
            ):
                return tranche.seq
        return None
