"""The agreement workflow: a child of an approved application's workflow.

The applicant accepts the agreement within the programme's window, or the approval lapses and
its money returns to the budget. On acceptance the first tranche is paid; each later tranche
falls due a `tranche_interval` after the previous one and is paid only once every report due
before it has been accepted (held back, visibly, until then). The reports themselves are the
reporting part of this workflow (workflows/reporting.py).

The final report's acceptance closes the project (implemented or not) and returns what was not
paid out; so does a stop decided on the pilot. A project lives for years: the workflow
continues as new after `continue_as_new_after` changes (or when Temporal suggests it),
carrying its state, never in the middle of an update.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.reporting import Reporting

with workflow.unsafe.imports_passed_through():
    from schemas.admin import DeadlineRequest
    from schemas.agreement import (
        AgreementAction,
        AgreementCarry,
        AgreementOutcome,
        AgreementStart,
        AgreementState,
        AgreementStatus,
        AgreementStop,
        ProjectOutcome,
        TrancheStatus,
    )
    from schemas.common import Actor, Role
    from schemas.history import WaitingAnswer
    from workflows import agreement_rules as rules
    from workflows.deadline import Deadline, sleep_until


@workflow.defn(name="Agreement")
class AgreementWorkflow(Reporting):
    """An approved project's agreement and funding. Its id is `agreement-<application uuid>`."""

    @workflow.init
    def __init__(self, start: AgreementStart) -> None:
        super().__init__(start)
        self._acceptance = Deadline(self._state.accept_by, summary="agreement acceptance window")

    @workflow.run
    async def run(self, start: AgreementStart) -> AgreementOutcome:
        """Offer, wait for the applicant, then pay the tranches as their reports come in,
        until the final report closes the project."""
        try:
            if start.carried is None:
                await self._record("agreement_offered")
                if not await self._acceptance.wait(lambda: self._answer is not None):
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
        await sleep_until(
            wake,
            lambda: self._changes != changes or self._stop is not None,
            summary="next report or tranche deadline",
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
        await self._remind_and_escalate(now)
        await self._pay_due_tranches(now)
        if self._outcome_of_project is not None:
            await self._end(AgreementStatus.completed, f"project {self._outcome_of_project}")

    async def _pay_due_tranches(self, now: datetime) -> None:
        """In order, each tranche due by `now` whose reports are accepted; the first one a
        report holds back stops the rest, visibly held."""
        for tranche in self._state.tranches:
            if tranche.status not in rules.UNPAID:
                continue
            if tranche.due_at is None or tranche.due_at > now:
                break
            if not (blocking := rules.blocking_reports(self._state.reports, tranche)):
                await self._pay(tranche.seq)
                continue
            reason = f"report {blocking[0]} is not accepted yet"
            if tranche.held_reason != reason:
                self._set_tranche(tranche.seq, status=TrancheStatus.held, held_reason=reason)
                await self._record("tranche_held", reason=reason)
            break

    def _next_deadline(self) -> datetime | None:
        times = [
            t.due_at
            for t in self._state.tranches
            if t.status == TrancheStatus.scheduled and t.due_at is not None
        ]
        return min(times + self._report_times(), default=None)

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
            reports = rules.report_schedule(now, self._start)
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

    # --- admins' updates and the parent's signals ---------------------------------------------

    @workflow.update
    async def extend_deadline(self, request: DeadlineRequest) -> AgreementState:
        """An admin moves a deadline later, with a reason: report `seq`'s (it leaves the overdue
        list and is reminded again before the new one), or without `seq` the applicant's window
        to accept the agreement."""
        async with self._lock:
            if request.seq is None:
                self._acceptance.move(request.until)
                self._state = self._state.model_copy(update={"accept_by": request.until})
                kind, what = "agreement_deadline_extended", "the agreement's acceptance"
            else:
                self._move_report(request.seq, request.until)
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
        if request.seq is not None:
            current = self._report_deadline(request.seq)
        elif self._state.status != AgreementStatus.offered or self._answer is not None:
            raise ApplicationError(f"the agreement is {self._state.status}, not offered")
        else:
            current = self._state.accept_by
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
        if self._state.status == AgreementStatus.offered:
            offer = rules.waiting_for_answer(wid, self._start.applicant, self._state.accept_by)
            return WaitingAnswer(workflow_id=wid, waiting=[offer])
        if self._state.status != AgreementStatus.accepted:
            return WaitingAnswer(workflow_id=wid)
        return WaitingAnswer(workflow_id=wid, waiting=self._waiting_for_reports(wid))
