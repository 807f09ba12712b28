"""Reporting: the reports an accepted agreement owes, part of the agreement workflow (its type
stays `Agreement`, workflows/agreement.py).

From acceptance the project owes a progress report every `report_interval`, a financial report
every `financial_report_interval` and a final report at its end; each gets a reminder
`reminder_lead_time` before its deadline and escalates to the admins when the deadline passes.
An admin, or the expert an admin assigned to the project's reports, accepts or returns them;
a report not accepted holds back the tranches due after it (workflows/agreement.py pays them).
Accepting the final report closes the project, implemented or not.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.agreement_book import AgreementBook

with workflow.unsafe.imports_passed_through():
    from activities import agreement as acts
    from schemas.agreement import (
        AgreementState,
        AgreementStatus,
        Report,
        ReportReview,
        ReportReviewerAssignment,
        ReportReviewerFound,
        ReportReviewerRequest,
        ReportStatus,
        ReportSubmission,
    )
    from schemas.common import Role
    from schemas.history import Waiting
    from schemas.notifications import NotificationKind
    from workflows import agreement_rules as rules
    from workflows.options import write


class Reporting(AgreementBook):
    """The agreement workflow's reports: reminders, escalations and the updates on them."""

    async def _remind_and_escalate(self, now: datetime) -> None:
        """Remind the applicant of each report coming due; escalate each late one."""
        lead = self._start.params.reminder_lead_time
        for report in self._state.reports:
            if rules.needs_reminder(report, now, lead):
                self._put_report(report.model_copy(update={"reminded": True}))
                note = self._note(
                    f"report:{report.seq}:reminder",
                    self._start.applicant.user_id,
                    NotificationKind.reminder,
                    rules.report_due(self._start.title, report),
                )
                await self._record("report_reminder", detail=f"report {report.seq}", notify=[note])
            if rules.is_late(report, now):
                self._put_report(self._report(report.seq).model_copy(update={"overdue": True}))
                note = self._note(
                    f"report:{report.seq}:overdue",
                    self._start.applicant.user_id,  # replaced by each admin's id
                    NotificationKind.report_overdue,
                    rules.report_overdue(self._start.title, report),
                )
                await self._record(
                    "report_overdue",
                    reason=f"report {report.seq} was due {report.due_at.isoformat()}",
                    notify_admins=note,
                )

    def _report_times(self) -> list[datetime]:
        return rules.report_times(self._state.reports, self._start.params.reminder_lead_time)

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
        if status not in rules.OPEN_REPORT:
            raise ApplicationError(f"report {submission.seq} is {status}")

    @workflow.update
    async def assign_report_reviewer(self, assignment: ReportReviewerAssignment) -> AgreementState:
        """An admin assigns an expert to accept or return the project's reports (replacing any
        earlier one): the expert named, or the least loaded eligible one, by the review stage's
        matching and conflict rules."""
        async with self._lock:
            request = ReportReviewerRequest(
                application_id=self._start.application_id, reviewer_id=assignment.reviewer_id
            )
            found: ReportReviewerFound = await write(
                acts.AgreementActivities.find_report_reviewer, request
            )
            if found.reviewer is None:
                raise ApplicationError(found.refusal or "not eligible")
            expert = found.reviewer
            self._state = self._state.model_copy(update={"report_reviewer": expert})
            note = self._note(
                f"reports:reviewer:{self._version + 1}",
                expert.user_id,
                NotificationKind.reports_assigned,
                rules.reports_assigned(self._start.title),
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
        reports = self._state.reports
        if problem := rules.review_problem(reports, report, review.accept, review.outcome):
            raise ApplicationError(problem)

    # --- an admin's extension (the agreement's `extend_deadline` update) -----------------------

    def _report_deadline(self, seq: int) -> datetime:
        """The deadline of report `seq`, which an admin may move; refused when it has none."""
        if self._state.status != AgreementStatus.accepted:
            raise ApplicationError(f"the agreement is {self._state.status}")
        report = self._report(seq)
        if report.status not in rules.OPEN_REPORT:
            raise ApplicationError(f"report {seq} is {report.status}")
        return report.due_at

    def _move_report(self, seq: int, until: datetime) -> None:
        """It leaves the overdue list and is reminded again before its new deadline."""
        lead = self._start.params.reminder_lead_time
        reminded = workflow.now() >= until - lead
        self._put_report(
            self._report(seq).model_copy(
                update={"due_at": until, "overdue": False, "reminded": reminded}
            )
        )

    def _waiting_for_reports(self, wid: str) -> list[Waiting]:
        """The next report due and every overdue one (the applicant's), and every submitted one
        (the report reviewer's or the admins'), each with what its lateness costs."""
        state, applicant = self._state, self._start.applicant
        lead = self._start.params.reminder_lead_time
        submitted = [r for r in state.reports if r.status == ReportStatus.submitted]
        waiting = [
            rules.waiting_for_review(
                wid, state.report_reviewer, r, rules.held_by(state.tranches, r)
            )
            for r in submitted
        ]
        owed = [r for r in state.reports if r.status in rules.OPEN_REPORT]
        for report in [r for r in owed if r.overdue] or owed[:1]:
            held = rules.held_by(state.tranches, report)
            waiting.append(rules.waiting_for_report(wid, applicant, report, lead, held))
        return waiting
