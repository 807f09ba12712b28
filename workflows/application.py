"""The application workflow: one per application, from submission to its final stage.

`run` is the lifecycle, one stage after another. Screening and revisions are its own part
(workflows/screening.py); review, the agreement (funding and reporting) and the pilot run as
child workflows (workflows/review.py, agreement.py, pilot.py). Every stage change is recorded
by one activity so that Postgres, the audit trail and the `Stage` search attribute move
together (workflows/application_book.py, with the workflow's one state model).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import ids
from workflows.application_book import PROGRAMME, STAGE, Child
from workflows.screening import Screening

with workflow.unsafe.imports_passed_through():
    from schemas.admin import AdminAction
    from schemas.agreement import AgreementOutcome, AgreementStart, AgreementStop
    from schemas.application import (
        ApplicationRecord,
        ApplicationStart,
        ApplicationStatus,
        WithdrawalRequest,
    )
    from schemas.common import Stage
    from schemas.council import Decision, Outcome
    from schemas.history import WaitingAnswer
    from schemas.pilot import PilotOutcome, PilotPlanRequest, PilotStart, Recommendation
    from schemas.review import ReviewStart
    from workflows import application_rules as rules
    from workflows.agreement import AgreementWorkflow
    from workflows.pilot import PilotWorkflow
    from workflows.review import ReviewWorkflow

__all__ = ["PROGRAMME", "STAGE", "ApplicationWorkflow"]

Agreement = Child[AgreementOutcome]


@workflow.defn(name="Application")
class ApplicationWorkflow(Screening):
    """An application's whole life. Its id is `application-<uuid>`: nothing personal."""

    @workflow.init
    def __init__(self, start: ApplicationStart) -> None:
        super().__init__(start)

    @workflow.run
    async def run(self, start: ApplicationStart) -> Stage:
        """Each stage in turn, each returning once the application has left it; a
        withdrawal or an admin's cancellation ends the application at any stage."""
        await self._register()  # submitted → screening
        await self._screening()  # → under_review | revision_requested ⇄ screening | ineligible
        if self._at(Stage.under_review):
            await self._review()  # → reviewed
        decision = await self._council() if self._at(Stage.reviewed) else None  # → in_council
        if decision is not None:  # → approved
            agreement = await self._offer_agreement(decision)
            accepted = await self._agreement_accepted(agreement)  # → agreement
            pilot = await self._pilot(agreement) if accepted else None  # → piloting
            if pilot is not None:
                await self._reporting(agreement, pilot)  # → reporting
            await self._agreement_end(agreement)  # → closed | expired | withdrawn
        if not self._state.stage.is_final:
            await workflow.wait_condition(lambda: self._state.stage.is_final)
        self._state.wound_down = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state.stage

    async def _review(self) -> None:
        """Expert review as a child workflow; a withdrawal meanwhile cancels it."""
        state, app = self._state, self._start.application_id
        review = Child(
            await workflow.start_child_workflow(
                ReviewWorkflow.run,
                ReviewStart(
                    application_id=app,
                    programme_id=state.programme.programme_id,
                    title=state.content.title,
                    specialty=state.content.specialty,
                    applicant_institution_id=self._start.applicant.institution_id,
                    partner_institutions=state.content.partner_institutions,
                    params=state.programme.spec.params,
                ),
                id=ids.review(app),
            )
        )
        await workflow.wait_condition(lambda: review.done() or state.stage.is_final)
        if not review.done():
            await review.cancel()
            return
        result = review.result()
        await self._change(
            Stage.reviewed,
            "reviewed",
            reason=rules.reviewed(result.reviews, result.score, result.spread),
            review_score=result.score,
            review_spread=result.spread,
            waiting=rules.COUNCIL,
        )

    async def _council(self) -> Decision | None:
        """In council until a decision: deferred comes back on a later agenda; returns an
        approval (None once rejected or ended)."""
        state = self._state
        while not state.stage.is_final:
            await workflow.wait_condition(lambda: bool(state.council_inbox) or state.stage.is_final)
            if state.stage.is_final:
                return None
            event = state.council_inbox.pop(0)
            if isinstance(event, str):
                reason = f"on the agenda of council session {event}"
                await self._change(Stage.in_council, "on_agenda", reason=reason, waiting=rules.VOTE)
            elif event.outcome == Outcome.rejected:
                await self._change(Stage.rejected, "council_rejected", reason=event.reason)
            elif event.outcome == Outcome.deferred:
                await self._change(
                    Stage.deferred,
                    "council_deferred",
                    reason=event.reason,
                    waiting=rules.LATER_SESSION,
                )
            else:
                return event
        return None

    async def _offer_agreement(self, decision: Decision) -> Agreement:
        """Approved: the agreement runs as a child workflow, offered to the applicant."""
        assert decision.amount_rub is not None
        state = self._state
        state.approved_rub = decision.amount_rub
        params = state.programme.spec.params
        await self._change(
            Stage.approved,
            "council_approved",
            reason=decision.reason,
            waiting=rules.agreement_offered(workflow.now() + params.agreement_window),
        )
        app = self._start.application_id
        return Child(
            await workflow.start_child_workflow(
                AgreementWorkflow.run,
                AgreementStart(
                    application_id=app,
                    programme_id=state.programme.programme_id,
                    title=state.content.title,
                    applicant=self._start.applicant,
                    amount_rub=decision.amount_rub,
                    duration_months=state.content.duration_months,
                    params=params,
                ),
                id=ids.agreement(app),
            )
        )

    async def _agreement_accepted(self, agreement: Agreement) -> bool:
        """approved → agreement, once the applicant accepts (False: it ended otherwise)."""
        state = self._state
        await workflow.wait_condition(
            lambda: agreement.done() or state.stage.is_final or state.agreement_accepted
        )
        if not (state.agreement_accepted and self._at(Stage.approved)):
            return False
        await self._change(Stage.agreement, "agreement_accepted", waiting=rules.PROJECT)
        return True

    async def _pilot(self, agreement: Agreement) -> PilotOutcome | None:
        """agreement → piloting once the pilot is planned, the pilot as a child workflow, until
        its decision (None: the project ended first)."""
        state = self._state
        await workflow.wait_condition(
            lambda: agreement.done() or state.stage.is_final or state.pilot_plan is not None
        )
        if state.pilot_plan is None or agreement.done() or state.stage.is_final:
            return None
        app, content = self._start.application_id, state.content
        handle = await workflow.start_child_workflow(
            PilotWorkflow.run,
            PilotStart(
                application_id=app,
                programme_id=state.programme.programme_id,
                title=content.title,
                specialty=content.specialty,
                applicant_institution_id=self._start.applicant.institution_id,
                partner_institutions=content.partner_institutions,
                plan=state.pilot_plan.plan,
                params=state.programme.spec.params,
            ),
            id=ids.pilot(app),
        )
        await self._change(
            Stage.piloting, "pilot_planned", actor=state.pilot_plan.actor, waiting=rules.PILOT
        )
        pilot = Child(handle)
        await workflow.wait_condition(
            lambda: pilot.done() or agreement.done() or state.stage.is_final
        )
        if not pilot.done():
            await pilot.cancel()
            return None
        return pilot.result()

    async def _reporting(self, agreement: Agreement, pilot: PilotOutcome) -> None:
        """piloting → reporting until the final report (or the pilot's stop) ends the
        agreement."""
        if pilot.decision == Recommendation.stop:
            await agreement.handle.signal(
                AgreementWorkflow.stop,
                AgreementStop(reason="the pilot's evaluation and decision stopped it"),
            )
        else:
            await self._change(Stage.reporting, "pilot_implement", waiting=rules.REPORTING)
        await workflow.wait_condition(lambda: agreement.done() or self._state.stage.is_final)

    async def _agreement_end(self, agreement: Agreement) -> None:
        """The agreement's end decides the final stage; an application that ended first
        cancels it (and the unspent money returns to the budget)."""
        if not agreement.done():
            # The agreement records why it ends (in the ledger too) before it is cancelled.
            if workflow.patched("agreement-ending-reason"):
                why = AgreementStop(reason=rules.why_ended(self._state.ended_by))
                await agreement.handle.signal(AgreementWorkflow.ending, why)
            await agreement.cancel()
            return
        if (ending := rules.agreement_ending(agreement.result())) is not None:
            await self._change(
                ending.stage, ending.kind, reason=ending.reason, outcome=ending.outcome
            )

    # --- the applicant's and the admins' updates, the children's signals ---------------------

    @workflow.update
    async def plan_pilot(self, request: PilotPlanRequest) -> ApplicationStatus:
        """The pilot plan (clinics, periods, metrics and targets): starts the pilot."""
        self._state.pilot_plan = request
        await workflow.wait_condition(
            lambda: self._state.stage not in (Stage.approved, Stage.agreement)
        )
        return self._status()

    @plan_pilot.validator
    def _validate_plan_pilot(self, request: PilotPlanRequest) -> None:
        state = self._state
        if not self._applicant_or_admin(request.actor):
            raise ApplicationError("only the applicant or an admin can plan the pilot")
        # The applicant saw the acceptance on record; this update may come in the same workflow
        # task as the agreement's signal (a task retried after its write committed), before the
        # run has moved to `agreement`: the signal is what counts.
        accepted = self._at(Stage.agreement) or (
            self._at(Stage.approved) and state.agreement_accepted
        )
        if not accepted or state.pilot_plan is not None:
            raise ApplicationError(
                f"a pilot is planned once the agreement is accepted: the application is "
                f"{state.stage}"
            )

    @workflow.update
    async def withdraw(self, request: WithdrawalRequest) -> ApplicationStatus:
        """Withdraws the application at any open stage."""
        if not await self._change(
            Stage.withdrawn, "withdrawn", actor=request.actor, reason=request.reason
        ):
            raise ApplicationError(f"the application is already {self._state.stage}")
        return self._status()

    @withdraw.validator
    def _validate_withdraw(self, request: WithdrawalRequest) -> None:
        if not self._applicant_or_admin(request.actor):
            raise ApplicationError("only the applicant or an admin can withdraw")
        if self._state.stage.is_final:
            raise ApplicationError(f"the application is already {self._state.stage}")

    @workflow.update
    async def cancel(self, request: AdminAction) -> ApplicationStatus:
        """An admin ends a stuck application: its review, agreement or pilot is cancelled and
        any money reserved for it returns to the budget before this returns."""
        if not await self._change(
            Stage.cancelled, "cancelled", actor=request.actor, reason=request.reason
        ):
            raise ApplicationError(f"the application is already {self._state.stage}")
        await workflow.wait_condition(lambda: self._state.wound_down)
        return self._status()

    @cancel.validator
    def _validate_cancel(self, request: AdminAction) -> None:
        rules.check_admin(request)
        if self._state.stage.is_final:
            raise ApplicationError(f"the application is already {self._state.stage}")

    @workflow.signal
    def enter_council(self, session_id: str) -> None:
        """A council session took the application on its agenda."""
        self._state.session_id = session_id
        self._state.council_inbox.append(session_id)

    @workflow.signal
    def council_decision(self, decision: Decision) -> None:
        """The council's decision on the application."""
        self._state.council_inbox.append(decision)

    @workflow.signal
    def agreement_accepted(self) -> None:
        """The applicant accepted the agreement (from the agreement workflow)."""
        self._state.agreement_accepted = True

    # --- queries --------------------------------------------------------------------------

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """Who must act next, what, by when and what happens otherwise; in the stages a child
        workflow (or the council session) holds, `ask` names it for the rest of the answer."""
        state, app = self._state, self._start.application_id
        session = state.session_id
        ask = {
            Stage.under_review: [ids.review(app)],
            Stage.in_council: [ids.council(session)] if session else [],
            Stage.approved: [ids.agreement(app)],
            Stage.agreement: [ids.agreement(app)],
            Stage.piloting: [ids.pilot(app), ids.agreement(app)],
            Stage.reporting: [ids.agreement(app)],
        }.get(state.stage, [])
        wid, applicant = workflow.info().workflow_id, self._start.applicant.user_id
        return rules.waiting_for(wid, state.stage, state.waiting, applicant, ask)

    @workflow.query
    def status(self) -> ApplicationStatus:
        """The stage, the open screening findings, and who must act next."""
        return self._status()

    @workflow.query
    def record(self) -> ApplicationRecord:
        """What the workflow holds that Postgres mirrors: stage, change numbers, amounts and
        outcome (for `grantflow check`)."""
        state = self._state
        return ApplicationRecord(
            application_id=self._start.application_id,
            stage=state.stage,
            seq=state.seq,
            recorded=state.recorded,
            requested_rub=state.content.requested_rub,
            approved_rub=state.approved_rub,
            outcome=state.outcome,
        )
