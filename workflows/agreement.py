"""The agreement workflow: a child of an approved application's workflow.

The applicant accepts the agreement within the programme's window, or the approval lapses and
its money returns to the budget. On acceptance the first tranche is paid; each later tranche
falls due a `tranche_interval` after the previous one and is paid only once the progress
report due before it has been accepted (held back, visibly, until then).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import agreements as acts
    from schemas.agreements import (
        AgreementAction,
        AgreementChange,
        AgreementOutcome,
        AgreementStart,
        AgreementState,
        AgreementStatus,
        Report,
        ReportReview,
        ReportStatus,
        ReportSubmission,
        Tranche,
        TrancheStatus,
    )
    from schemas.common import Actor, Role
    from schemas.council import Reservation
    from workflows.options import WRITE_RETRY, WRITE_TIMEOUT


def split(amount: int, parts: int) -> list[int]:
    """`amount` in `parts` tranches as equal as roubles allow; the first takes the remainder."""
    base, rest = divmod(amount, parts)
    return [base + rest, *([base] * (parts - 1))]


def tranche_count(duration_months: int) -> int:
    """One tranche per project year."""
    return max(1, -(-duration_months // 12))


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
        self._changes = 0
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, start: AgreementStart) -> AgreementOutcome:
        """Offer, wait for the applicant, then pay the tranches as their reports come in."""
        try:
            await self._record("agreement_offered")
            try:
                await workflow.wait_condition(
                    lambda: self._answer is not None,
                    timeout=self._state.accept_by - workflow.now(),
                    timeout_summary="agreement acceptance window",
                )
            except TimeoutError:
                await self._end(AgreementStatus.lapsed, "not accepted by the deadline")
                return self._outcome()
            await workflow.wait_condition(lambda: self._decided)
            if self._state.status != AgreementStatus.accepted:
                return self._outcome()
            for tranche in self._state.tranches[1:]:
                await self._pay_when_due(tranche.seq)
            self._state = self._state.model_copy(update={"status": AgreementStatus.completed})
            await self._record("agreement_completed")
        except asyncio.CancelledError:
            await self._end(AgreementStatus.cancelled, "the application was withdrawn")
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._outcome()

    def _outcome(self) -> AgreementOutcome:
        return AgreementOutcome(status=self._state.status, disbursed_rub=self._state.disbursed_rub)

    async def _pay_when_due(self, seq: int) -> None:
        tranche = self._state.tranches[seq - 1]
        assert tranche.due_at is not None
        if tranche.due_at > workflow.now():
            await workflow.sleep(tranche.due_at - workflow.now(), summary=f"tranche {seq} due")
        if not self._report_accepted(seq - 1):
            self._set_tranche(
                seq, status=TrancheStatus.held, held_reason=f"report {seq - 1} is not accepted yet"
            )
            await self._record("tranche_held", reason=f"report {seq - 1} is not accepted yet")
            await workflow.wait_condition(lambda: self._report_accepted(seq - 1))
        await self._pay(seq)

    def _report_accepted(self, seq: int) -> bool:
        return self._state.reports[seq - 1].status == ReportStatus.accepted

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
        """Lapse, decline or cancel: what is not paid out goes back to the budget."""
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
            reports = [
                Report(seq=i, due_at=now + interval * i, status=ReportStatus.due)
                for i in range(1, len(tranches))
            ]
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
        status = self._report(submission.seq).status
        if status not in (ReportStatus.due, ReportStatus.returned):
            raise ApplicationError(f"report {submission.seq} is {status}")

    @workflow.update
    async def review_report(self, review: ReportReview) -> Report:
        """An admin accepts a report (releasing a tranche it held back) or returns it."""
        async with self._lock:
            status = ReportStatus.accepted if review.accept else ReportStatus.returned
            report = self._report(review.seq).model_copy(
                update={"status": status, "comment": review.comment}
            )
            self._put_report(report)
            await self._record(f"report_{status.value}", actor=review.actor, reason=review.comment)
            return report

    @review_report.validator
    def _validate_review_report(self, review: ReportReview) -> None:
        if review.actor.role != Role.admin:
            raise ApplicationError("only an admin can accept or return a report")
        status = self._report(review.seq).status
        if status != ReportStatus.submitted:
            raise ApplicationError(f"report {review.seq} is {status}, not submitted")

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
