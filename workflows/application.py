"""The application workflow: one per application, from submission to its final stage.

Intake lives here (screening, revision, expiry, withdrawal); review, the agreement (funding and
reporting) and the pilot run as child workflows (workflows/review.py, agreement.py, pilot.py).
Every stage change is recorded by one activity so that Postgres, the audit trail and the
`Stage` search attribute move together.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError, ChildWorkflowError

from workflows import ids

with workflow.unsafe.imports_passed_through():
    from activities import application as acts
    from schemas.admin import AdminAction, DeadlineRequest, RescreenRequest
    from schemas.agreement import (
        AgreementOutcome,
        AgreementStart,
        AgreementStatus,
        AgreementStop,
        ProjectOutcome,
    )
    from schemas.application import (
        ApplicationContent,
        ApplicationRecord,
        ApplicationStart,
        ApplicationStatus,
        Finding,
        RevisionRequest,
        StageChange,
        WaitingFor,
        WithdrawalRequest,
    )
    from schemas.common import Actor, Role, Stage
    from schemas.council import Decision, Outcome
    from schemas.history import Waiting, WaitingAnswer
    from schemas.pilot import PilotOutcome, PilotPlanRequest, PilotStart, Recommendation
    from schemas.review import ReviewOutcome, ReviewStart
    from workflows.agreement import AgreementWorkflow
    from workflows.intake import screen
    from workflows.options import MIN_WAIT, write
    from workflows.pilot import PilotWorkflow
    from workflows.review import ReviewWorkflow

STAGE = SearchAttributeKey.for_keyword("Stage")
PROGRAMME = SearchAttributeKey.for_keyword("ProgrammeId")
# The registration and the stage changes: local activities from this patch on (options.write).
LOCAL_WRITES = "application-local-writes"


@workflow.defn(name="Application")
class ApplicationWorkflow:
    """An application's whole life. Its id is `application-<uuid>`: nothing personal."""

    @workflow.init
    def __init__(self, start: ApplicationStart) -> None:
        self._start = start
        self._content = start.content
        self._stage = Stage.submitted
        self._seq = 0
        self._registered = False
        self._recorded = 0  # seq of the last change on record
        self._findings: list[Finding] = []
        self._waiting: WaitingFor | None = None
        self._revision: RevisionRequest | None = None
        self._screenings = 0
        self._lock = asyncio.Lock()
        self._council_inbox: list[str | Decision] = []
        self._agreement_accepted = False
        self._pilot_plan: PilotPlanRequest | None = None
        self._revision_by: datetime | None = None  # moved by an admin's extension
        self._rescreen: RescreenRequest | None = None
        self._wound_down = False  # final, and its children ended (money back in the budget)
        self._ended_by: StageChange | None = None  # the change to the final stage
        self._session_id: str | None = None  # the council session it is on the agenda of
        # Kept for the `record` query only: assigning them issues no command.
        self._approved_rub: int | None = None
        self._outcome: ProjectOutcome | None = None

    @workflow.run
    async def run(self, start: ApplicationStart) -> Stage:
        """Register, screen (with revisions), then wait in review for the next stage."""
        await self._register()
        while not self._stage.is_final:
            if await self._screen():
                break
        if self._stage == Stage.under_review:
            await self._review()
        if self._stage == Stage.reviewed:
            await self._council()
        if not self._stage.is_final:
            await workflow.wait_condition(lambda: self._stage.is_final)
        self._wound_down = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._stage

    async def _register(self) -> None:
        async with self._lock:
            self._seq, self._stage = 1, Stage.screening
            self._waiting = WaitingFor(who="system", what="screening")
            await write(
                acts.ApplicationActivities.register_application,
                self._start,
                local_from=LOCAL_WRITES,
            )
            self._registered, self._recorded = True, 1
            # Postgres says `screening` from here on: so does Temporal's Stage, which said
            # `submitted` until the first screening's outcome before this patch.
            if workflow.patched("stage-screening-on-register"):
                workflow.upsert_search_attributes([STAGE.value_set(Stage.screening.value)])

    async def _screen(self) -> bool:
        """One screening round; True when screening is over (eligible or final)."""
        self._findings = screen(
            self._content,
            self._start.programme,
            self._start.organisation_type,
            self._start.submitted_at,
        )
        if any(not f.fixable for f in self._findings):
            await self._change(
                Stage.ineligible, "screened", reason="; ".join(f.message for f in self._findings)
            )
        elif not self._findings:
            await self._change(
                Stage.under_review,
                "screened",
                waiting=WaitingFor(who="expert reviewers", what="review the application"),
            )
        else:
            deadline = workflow.now() + self._start.programme.spec.params.revision_window
            self._revision_by = deadline
            await self._change(
                Stage.revision_requested,
                "screened",
                waiting=WaitingFor(
                    who="applicant",
                    by=deadline,
                    otherwise="the application expires",
                    what="revise the application: " + "; ".join(f.message for f in self._findings),
                ),
            )
        self._screenings += 1  # a pending `revise` update returns from here on
        if self._stage != Stage.revision_requested:
            return True
        return await self._await_revision()

    async def _review(self) -> None:
        """Expert review as a child workflow; a withdrawal meanwhile cancels it."""
        content = self._content
        handle = await workflow.start_child_workflow(
            ReviewWorkflow.run,
            ReviewStart(
                application_id=self._start.application_id,
                programme_id=self._start.programme.programme_id,
                title=content.title,
                specialty=content.specialty,
                applicant_institution_id=self._start.applicant.institution_id,
                partner_institutions=content.partner_institutions,
                params=self._start.programme.spec.params,
            ),
            id=ids.review(self._start.application_id),
        )
        outcome: list[ReviewOutcome] = []

        async def wait() -> None:
            outcome.append(await handle)

        waiter = asyncio.create_task(wait())
        await workflow.wait_condition(lambda: waiter.done() or self._stage.is_final)
        if not waiter.done():
            handle.cancel()
            with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
                await waiter
            return
        waiter.result()
        result = outcome[0]
        await self._change(
            Stage.reviewed,
            "reviewed",
            reason=f"{result.reviews} reviews, score {result.score:g}, spread {result.spread:g}",
            review_score=result.score,
            review_spread=result.spread,
            waiting=WaitingFor(who="council", what="decide on the application"),
        )

    async def _council(self) -> None:
        """In council until a decision: deferred comes back on a later agenda; approved goes
        on to the agreement."""
        while not self._stage.is_final:
            await workflow.wait_condition(lambda: bool(self._council_inbox) or self._stage.is_final)
            if self._stage.is_final:
                return
            event = self._council_inbox.pop(0)
            if isinstance(event, str):
                await self._change(
                    Stage.in_council,
                    "on_agenda",
                    reason=f"on the agenda of council session {event}",
                    waiting=WaitingFor(who="council", what="vote and decide"),
                )
                continue
            if event.outcome == Outcome.rejected:
                await self._change(Stage.rejected, "council_rejected", reason=event.reason)
            elif event.outcome == Outcome.deferred:
                await self._change(
                    Stage.deferred,
                    "council_deferred",
                    reason=event.reason,
                    waiting=WaitingFor(who="council", what="decide at a later session"),
                )
            else:
                await self._agreement(event)
                return

    async def _agreement(self, decision: Decision) -> None:
        """Approved: the agreement runs as a child workflow; a withdrawal cancels it (and the
        unspent money returns to the budget)."""
        assert decision.amount_rub is not None
        self._approved_rub = decision.amount_rub
        params = self._start.programme.spec.params
        await self._change(
            Stage.approved,
            "council_approved",
            reason=decision.reason,
            waiting=WaitingFor(
                who="applicant",
                what="accept the agreement",
                by=workflow.now() + params.agreement_window,
                otherwise="the approval lapses and its money returns to the budget",
            ),
        )
        handle = await workflow.start_child_workflow(
            AgreementWorkflow.run,
            AgreementStart(
                application_id=self._start.application_id,
                programme_id=self._start.programme.programme_id,
                title=self._content.title,
                applicant=self._start.applicant,
                amount_rub=decision.amount_rub,
                duration_months=self._content.duration_months,
                params=params,
            ),
            id=ids.agreement(self._start.application_id),
        )
        outcome: list[AgreementOutcome] = []

        async def wait() -> None:
            outcome.append(await handle)

        waiter = asyncio.create_task(wait())
        await workflow.wait_condition(
            lambda: waiter.done() or self._stage.is_final or self._agreement_accepted
        )
        if self._agreement_accepted and self._stage == Stage.approved:
            await self._change(
                Stage.agreement,
                "agreement_accepted",
                waiting=WaitingFor(
                    who="applicant", what="plan the pilot and report progress as scheduled"
                ),
            )
            await self._project(handle, waiter)
        if not waiter.done():
            # The agreement records why it ends (in the ledger too) before it is cancelled.
            if workflow.patched("agreement-ending-reason"):
                await handle.signal(AgreementWorkflow.ending, AgreementStop(reason=self._why()))
            handle.cancel()
            with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
                await waiter
            return
        waiter.result()
        result = outcome[0]
        if result.status == AgreementStatus.lapsed:
            await self._change(
                Stage.expired, "agreement_lapsed", reason="the agreement was not accepted in time"
            )
        elif result.status == AgreementStatus.declined:
            await self._change(
                Stage.withdrawn, "agreement_declined", reason="the applicant declined the agreement"
            )
        elif result.status == AgreementStatus.stopped:
            await self._change(
                Stage.closed,
                "project_stopped",
                reason="the pilot's decision stopped the project",
                outcome=ProjectOutcome.not_implemented,
            )
        elif result.project_outcome is not None:
            await self._change(
                Stage.closed,
                f"project_{result.project_outcome.value}",
                reason="the final report was accepted",
                outcome=result.project_outcome,
            )

    async def _project(
        self,
        agreement: workflow.ChildWorkflowHandle[AgreementWorkflow, AgreementOutcome],
        funding: asyncio.Task[None],
    ) -> None:
        """From the accepted agreement to the project's end: the pilot as a child workflow,
        then reporting until the agreement's final report closes the project."""
        await workflow.wait_condition(
            lambda: funding.done() or self._stage.is_final or self._pilot_plan is not None
        )
        if self._pilot_plan is None or funding.done() or self._stage.is_final:
            return
        content = self._content
        pilot = await workflow.start_child_workflow(
            PilotWorkflow.run,
            PilotStart(
                application_id=self._start.application_id,
                programme_id=self._start.programme.programme_id,
                title=content.title,
                specialty=content.specialty,
                applicant_institution_id=self._start.applicant.institution_id,
                partner_institutions=content.partner_institutions,
                plan=self._pilot_plan.plan,
                params=self._start.programme.spec.params,
            ),
            id=ids.pilot(self._start.application_id),
        )
        await self._change(
            Stage.piloting,
            "pilot_planned",
            actor=self._pilot_plan.actor,
            waiting=WaitingFor(who="clinics", what="run the pilot and report its metrics"),
        )
        decided: list[PilotOutcome] = []

        async def wait_pilot() -> None:
            decided.append(await pilot)

        piloting = asyncio.create_task(wait_pilot())
        await workflow.wait_condition(
            lambda: piloting.done() or funding.done() or self._stage.is_final
        )
        if not piloting.done():
            pilot.cancel()
            with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
                await piloting
            return
        piloting.result()
        if decided[0].decision == Recommendation.stop:
            await agreement.signal(
                AgreementWorkflow.stop,
                AgreementStop(reason="the pilot's evaluation and decision stopped it"),
            )
        else:
            await self._change(
                Stage.reporting,
                "pilot_implement",
                waiting=WaitingFor(who="applicant", what="report until the final report"),
            )
        await workflow.wait_condition(lambda: funding.done() or self._stage.is_final)

    @workflow.update
    async def plan_pilot(self, request: PilotPlanRequest) -> ApplicationStatus:
        """The pilot plan (clinics, periods, metrics and targets): starts the pilot."""
        self._pilot_plan = request
        await workflow.wait_condition(lambda: self._stage not in (Stage.approved, Stage.agreement))
        return self.status()

    @plan_pilot.validator
    def _validate_plan_pilot(self, request: PilotPlanRequest) -> None:
        if (
            request.actor.role != Role.admin
            and request.actor.user_id != self._start.applicant.user_id
        ):
            raise ApplicationError("only the applicant or an admin can plan the pilot")
        # The applicant saw the acceptance on record; this update may come in the same workflow
        # task as the agreement's signal (a task retried after its write committed), before the
        # run has moved to `agreement`: the signal is what counts.
        accepted = self._stage == Stage.agreement or (
            self._stage == Stage.approved and self._agreement_accepted
        )
        if not accepted or self._pilot_plan is not None:
            raise ApplicationError(
                f"a pilot is planned once the agreement is accepted: the application is "
                f"{self._stage}"
            )

    @workflow.signal
    def enter_council(self, session_id: str) -> None:
        """A council session took the application on its agenda."""
        self._session_id = session_id
        self._council_inbox.append(session_id)

    @workflow.signal
    def council_decision(self, decision: Decision) -> None:
        """The council's decision on the application."""
        self._council_inbox.append(decision)

    @workflow.signal
    def agreement_accepted(self) -> None:
        """The applicant accepted the agreement (from the agreement workflow)."""
        self._agreement_accepted = True

    async def _await_revision(self) -> bool:
        """Until the revision, a re-screening, a final stage or the deadline; an admin's
        extension moves the deadline, and the wait starts over with the new one."""
        while True:
            by = self._revision_by
            assert by is not None
            if not await self._revision_until(by):
                await self._change(
                    Stage.expired, "revision_missed", reason="no revision by the deadline"
                )
                return True
            if self._revision is not None or self._rescreen is not None or self._stage.is_final:
                break
        if self._revision is not None:
            revision, self._revision = self._revision, None
            self._content = revision.content
            await self._change(
                Stage.screening,
                "resubmitted",
                actor=revision.actor,
                content=revision.content,
                waiting=WaitingFor(who="system", what="screening"),
            )
        elif self._rescreen is not None:
            request, self._rescreen = self._rescreen, None
            self._start = self._start.model_copy(update={"programme": request.programme})
            await self._change(
                Stage.screening,
                "rescreened",
                actor=request.actor,
                reason=request.reason,
                waiting=WaitingFor(who="system", what="screening"),
            )
        return self._stage.is_final

    async def _revision_until(self, by: datetime) -> bool:
        """False when `by` passed with nothing happening."""
        try:
            await workflow.wait_condition(
                lambda: (
                    self._revision is not None
                    or self._rescreen is not None
                    or self._stage.is_final
                    or self._revision_by != by
                ),
                timeout=max(by - workflow.now(), MIN_WAIT),
            )
        except TimeoutError:
            return False
        return True

    async def _change(
        self,
        stage: Stage,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        content: ApplicationContent | None = None,
        waiting: WaitingFor | None = None,
        review_score: float | None = None,
        review_spread: float | None = None,
        outcome: ProjectOutcome | None = None,
    ) -> bool:
        """Record a stage change; the lock keeps a withdrawal from interleaving with screening.
        Returns False when the application had already reached a final stage."""
        async with self._lock:
            if self._stage.is_final:
                return False
            self._seq += 1
            self._stage, self._waiting = stage, None if stage.is_final else waiting
            self._outcome = outcome or self._outcome
            change = StageChange(
                application_id=self._start.application_id,
                workflow_id=workflow.info().workflow_id,
                seq=self._seq,
                stage=stage,
                kind=kind,
                at=workflow.now(),
                actor=actor,
                reason=reason,
                findings=self._findings if stage != Stage.screening else [],
                action_required=waiting.what if waiting and waiting.who == "applicant" else None,
                deadline=waiting.by if waiting else None,
                content=content,
                review_score=review_score,
                review_spread=review_spread,
                outcome=outcome,
            )
            if stage.is_final:
                self._ended_by = change
            await write(
                acts.ApplicationActivities.record_stage_change, change, local_from=LOCAL_WRITES
            )
            self._recorded = self._seq
            workflow.upsert_search_attributes([STAGE.value_set(stage.value)])
            return True

    def _why(self) -> str:
        """Why the application ended early, as its children's records say it."""
        ended = self._ended_by
        if ended is not None and ended.stage == Stage.cancelled and ended.actor is not None:
            return f"the application was cancelled by an admin ({ended.actor.name}): {ended.reason}"
        return "the application was withdrawn"

    def _ended(self) -> bool:
        """In a final stage, and that stage is on record."""
        return self._stage.is_final and self._recorded == self._seq

    @workflow.update
    async def registered(self) -> ApplicationStatus:
        """The submission's acknowledgement: returns once the application is on record and
        its first screening is done, so the applicant sees the outcome at once."""
        await workflow.wait_condition(lambda: self._screenings > 0 or self._ended())
        return self.status()

    @workflow.update
    async def revise(self, request: RevisionRequest) -> ApplicationStatus:
        """The applicant's revision; returns the outcome of the screening it triggers."""
        self._revision = request
        screenings = self._screenings
        await workflow.wait_condition(lambda: self._screenings > screenings or self._ended())
        return self.status()

    @revise.validator
    def _validate_revise(self, request: RevisionRequest) -> None:
        if request.actor.user_id != self._start.applicant.user_id:
            raise ApplicationError("only the applicant can revise this application")
        if self._stage != Stage.revision_requested or self._revision is not None:
            raise ApplicationError(f"no revision is expected: the application is {self._stage}")

    @workflow.update
    async def withdraw(self, request: WithdrawalRequest) -> ApplicationStatus:
        """Withdraws the application at any open stage."""
        if not await self._change(
            Stage.withdrawn, "withdrawn", actor=request.actor, reason=request.reason
        ):
            raise ApplicationError(f"the application is already {self._stage}")
        return self.status()

    @withdraw.validator
    def _validate_withdraw(self, request: WithdrawalRequest) -> None:
        if (
            request.actor.role != Role.admin
            and request.actor.user_id != self._start.applicant.user_id
        ):
            raise ApplicationError("only the applicant or an admin can withdraw")
        if self._stage.is_final:
            raise ApplicationError(f"the application is already {self._stage}")

    # --- admins' interventions: each an update with a validator and a reason ----------------

    @workflow.update
    async def extend_revision(self, request: DeadlineRequest) -> ApplicationStatus:
        """An admin gives the applicant longer to revise; the applicant sees the new deadline."""
        self._revision_by = request.until
        waiting = self._waiting
        if not await self._change(
            Stage.revision_requested,
            "revision_deadline_extended",
            actor=request.actor,
            reason=request.reason,
            waiting=WaitingFor(
                who="applicant",
                what=waiting.what if waiting else "revise the application",
                by=request.until,
                otherwise="the application expires",
            ),
        ):
            raise ApplicationError(f"the application is already {self._stage}")
        return self.status()

    @extend_revision.validator
    def _validate_extend_revision(self, request: DeadlineRequest) -> None:
        _check_admin(request)
        if self._stage != Stage.revision_requested or self._revision is not None:
            raise ApplicationError(f"no revision is expected: the application is {self._stage}")
        current = self._revision_by
        if current is not None and request.until <= max(current, workflow.now()):
            raise ApplicationError(
                f"the new deadline must be later than the current one ({current.isoformat()})"
            )

    @workflow.update
    async def rescreen(self, request: RescreenRequest) -> ApplicationStatus:
        """An admin screens the application again against the programme as it stands now
        (after a correction); returns the new screening's outcome."""
        self._rescreen = request
        screenings = self._screenings
        await workflow.wait_condition(lambda: self._screenings > screenings or self._ended())
        return self.status()

    @rescreen.validator
    def _validate_rescreen(self, request: RescreenRequest) -> None:
        _check_admin(request)
        if request.programme.programme_id != self._start.programme.programme_id:
            raise ApplicationError("that is another programme")
        if self._stage != Stage.revision_requested or self._revision or self._rescreen:
            raise ApplicationError(
                f"screening is re-run while a revision is awaited: the application is {self._stage}"
            )

    @workflow.update
    async def cancel(self, request: AdminAction) -> ApplicationStatus:
        """An admin ends a stuck application: its review, agreement or pilot is cancelled and
        any money reserved for it returns to the budget before this returns."""
        if not await self._change(
            Stage.cancelled, "cancelled", actor=request.actor, reason=request.reason
        ):
            raise ApplicationError(f"the application is already {self._stage}")
        await workflow.wait_condition(lambda: self._wound_down)
        return self.status()

    @cancel.validator
    def _validate_cancel(self, request: AdminAction) -> None:
        _check_admin(request)
        if self._stage.is_final:
            raise ApplicationError(f"the application is already {self._stage}")

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """Who must act next, what, by when and what happens otherwise; in the stages a child
        workflow (or the council session) holds, `ask` names it for the rest of the answer."""
        wid = workflow.info().workflow_id
        app = self._start.application_id
        ask = {
            Stage.under_review: [ids.review(app)],
            Stage.in_council: [ids.council(self._session_id)] if self._session_id else [],
            Stage.approved: [ids.agreement(app)],
            Stage.agreement: [ids.agreement(app)],
            Stage.piloting: [ids.pilot(app), ids.agreement(app)],
            Stage.reporting: [ids.agreement(app)],
        }.get(self._stage, [])
        own = self._waiting
        if own is None or self._stage.is_final or (ask and self._stage != Stage.agreement):
            return WaitingAnswer(workflow_id=wid, ask=ask)
        user_ids = [self._start.applicant.user_id] if own.who == "applicant" else []
        waiting = Waiting(
            workflow_id=wid,
            who=own.who,
            user_ids=user_ids,
            what=own.what,
            by=own.by,
            otherwise=own.otherwise,
        )
        return WaitingAnswer(workflow_id=wid, waiting=[waiting], ask=ask)

    @workflow.query
    def status(self) -> ApplicationStatus:
        """The stage, the open screening findings, and who must act next."""
        return ApplicationStatus(
            application_id=self._start.application_id,
            stage=self._stage,
            findings=self._findings,
            waiting_for=self._waiting,
        )

    @workflow.query
    def record(self) -> ApplicationRecord:
        """What the workflow holds that Postgres mirrors: stage, change numbers, amounts and
        outcome (for `grantflow check`)."""
        return ApplicationRecord(
            application_id=self._start.application_id,
            stage=self._stage,
            seq=self._seq,
            recorded=self._recorded,
            requested_rub=self._content.requested_rub,
            approved_rub=self._approved_rub,
            outcome=self._outcome,
        )


def _check_admin(request: AdminAction) -> None:
    if request.actor.role != Role.admin:
        raise ApplicationError("only an admin can do this")
    if not request.reason.strip():
        raise ApplicationError("a reason is required")
