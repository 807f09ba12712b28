"""Screening: the application workflow's intake stage (its type stays `Application`,
workflows/application.py).

Each screening round runs the programme's rules (workflows/intake.py) in-process. A fixable gap
sends the application back to the applicant until the revision window closes; an admin may
extend that window, or screen again against a corrected programme. The applicant's submission
and revision, and an admin's re-screening, return once their screening's outcome is known.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.application_book import ApplicationBook

with workflow.unsafe.imports_passed_through():
    from schemas.admin import DeadlineRequest, RescreenRequest
    from schemas.application import ApplicationStatus, RevisionRequest
    from schemas.common import Stage
    from workflows import application_rules as rules
    from workflows.deadline import Deadline
    from workflows.intake import screen


class Screening(ApplicationBook):
    """The application workflow's screening and revisions."""

    async def _screening(self) -> None:
        """screening → under_review, ineligible, or revision_requested → screening again
        (revised or re-screened) until eligible, or expired when no revision came in time."""
        while not self._state.stage.is_final:
            await self._screen()
            if not self._at(Stage.revision_requested) or not await self._revised():
                return

    async def _screen(self) -> None:
        """One screening round, and its outcome on record."""
        state = self._state
        state.findings = screen(
            state.content, state.programme, self._start.organisation_type, self._start.submitted_at
        )
        if any(not f.fixable for f in state.findings):
            await self._change(Stage.ineligible, "screened", reason=rules.reasons(state.findings))
        elif not state.findings:
            await self._change(Stage.under_review, "screened", waiting=rules.REVIEW)
        else:
            by = workflow.now() + state.programme.spec.params.revision_window
            state.revision_by = Deadline(by)
            await self._change(
                Stage.revision_requested,
                "screened",
                waiting=rules.revision_wanted(state.findings, by),
            )
        state.screenings += 1  # a pending `revise` update returns from here on

    async def _revised(self) -> bool:
        """Until the revision, a re-screening, a final stage or the deadline; True when the
        application goes back to screening."""
        state = self._state
        assert state.revision_by is not None
        if not await state.revision_by.wait(
            lambda: state.revision is not None or state.rescreen is not None or state.stage.is_final
        ):
            await self._change(
                Stage.expired, "revision_missed", reason="no revision by the deadline"
            )
            return False
        if state.revision is not None:
            revision, state.revision = state.revision, None
            state.content = revision.content
            await self._change(
                Stage.screening,
                "resubmitted",
                actor=revision.actor,
                content=revision.content,
                waiting=rules.SCREENING,
            )
        elif state.rescreen is not None:
            request, state.rescreen = state.rescreen, None
            state.programme = request.programme
            await self._change(
                Stage.screening,
                "rescreened",
                actor=request.actor,
                reason=request.reason,
                waiting=rules.SCREENING,
            )
        return not state.stage.is_final

    def _status(self) -> ApplicationStatus:
        return ApplicationStatus(
            application_id=self._start.application_id,
            stage=self._state.stage,
            findings=self._state.findings,
            waiting_for=self._state.waiting,
        )

    @workflow.update
    async def registered(self) -> ApplicationStatus:
        """The submission's acknowledgement: returns once the application is on record and
        its first screening is done, so the applicant sees the outcome at once."""
        await workflow.wait_condition(lambda: self._state.screenings > 0 or self._ended())
        return self._status()

    @workflow.update
    async def revise(self, request: RevisionRequest) -> ApplicationStatus:
        """The applicant's revision; returns the outcome of the screening it triggers."""
        self._state.revision = request
        screenings = self._state.screenings
        await workflow.wait_condition(lambda: self._state.screenings > screenings or self._ended())
        return self._status()

    @revise.validator
    def _validate_revise(self, request: RevisionRequest) -> None:
        if request.actor.user_id != self._start.applicant.user_id:
            raise ApplicationError("only the applicant can revise this application")
        if not self._at(Stage.revision_requested) or self._state.revision is not None:
            raise ApplicationError(
                f"no revision is expected: the application is {self._state.stage}"
            )

    @workflow.update
    async def extend_revision(self, request: DeadlineRequest) -> ApplicationStatus:
        """An admin gives the applicant longer to revise; the applicant sees the new deadline."""
        assert self._state.revision_by is not None
        self._state.revision_by.move(request.until)
        if not await self._change(
            Stage.revision_requested,
            "revision_deadline_extended",
            actor=request.actor,
            reason=request.reason,
            waiting=rules.revision_extended(self._state.waiting, request.until),
        ):
            raise ApplicationError(f"the application is already {self._state.stage}")
        return self._status()

    @extend_revision.validator
    def _validate_extend_revision(self, request: DeadlineRequest) -> None:
        rules.check_admin(request)
        if not self._at(Stage.revision_requested) or self._state.revision is not None:
            raise ApplicationError(
                f"no revision is expected: the application is {self._state.stage}"
            )
        current = self._state.revision_by
        if current is not None and request.until <= max(current.at, workflow.now()):
            raise ApplicationError(
                f"the new deadline must be later than the current one ({current.at.isoformat()})"
            )

    @workflow.update
    async def rescreen(self, request: RescreenRequest) -> ApplicationStatus:
        """An admin screens the application again against the programme as it stands now
        (after a correction); returns the new screening's outcome."""
        self._state.rescreen = request
        screenings = self._state.screenings
        await workflow.wait_condition(lambda: self._state.screenings > screenings or self._ended())
        return self._status()

    @rescreen.validator
    def _validate_rescreen(self, request: RescreenRequest) -> None:
        rules.check_admin(request)
        if request.programme.programme_id != self._start.programme.programme_id:
            raise ApplicationError("that is another programme")
        state = self._state
        if not self._at(Stage.revision_requested) or state.revision or state.rescreen:
            raise ApplicationError(
                f"screening is re-run while a revision is awaited: the application is {state.stage}"
            )
