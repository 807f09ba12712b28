"""The pilot workflow: a child of the application's workflow once its pilot is planned.

Every site runs as its own child workflow (workflows/site.py). A declined site flags the pilot
for an admin, who proposes another clinic. When every site has reported, an independent expert
(matched like a reviewer: same specialty, no conflict of interest, not one of the application's
reviewers) evaluates the results against the targets and recommends; an admin decides:
implement, extend (a further period at some sites, then a new evaluation) or stop.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

from workflows import ids

with workflow.unsafe.imports_passed_through():
    from activities import pilot as acts
    from schemas.common import Actor, Role
    from schemas.history import WaitingAnswer
    from schemas.notifications import NewNotification, NotificationKind
    from schemas.pilot import (
        Evaluation,
        EvaluationSubmission,
        EvaluatorAssignment,
        EvaluatorFound,
        EvaluatorRequest,
        PilotChange,
        PilotDecision,
        PilotOutcome,
        PilotStart,
        PilotState,
        PilotStatus,
        Recommendation,
        SitePlanSpec,
        SiteProposal,
        SiteStart,
        SiteState,
        SiteStatus,
    )
    from workflows import pilot_rules as rules
    from workflows.options import write
    from workflows.pilot_rules import Text
    from workflows.site import PilotSiteWorkflow


# Its writes below are local activities from this patch on (options.write).
PILOT_LOCAL_WRITES = "pilot-local-writes"


@workflow.defn(name="Pilot")
class PilotWorkflow:
    """An approved project's pilot. Its id is `pilot-<application uuid>`."""

    @workflow.init
    def __init__(self, start: PilotStart) -> None:
        self._start = start
        self._state = PilotState(
            application_id=start.application_id, status=PilotStatus.running, round=1, sites=[]
        )
        self._version = 0
        self._replaced: set[str] = set()  # declined sites an admin has replaced
        self._running = 0  # site workflows not finished yet
        self._changes = 0
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, start: PilotStart) -> PilotOutcome:
        """Run the sites, have the results evaluated, wait for the admin's decision."""
        try:
            await self._record("pilot_planned")
            for plan in start.plan.sites:
                await self._start_site(plan)
            while True:
                await workflow.wait_condition(self._round_done)
                await self._evaluate()
                await workflow.wait_condition(lambda: self._state.decision is not None)
                decision = self._state.decision
                assert decision is not None
                if decision.decision != Recommendation.extend:
                    break
                await self._extend(decision)
        except asyncio.CancelledError:
            self._set(status=PilotStatus.cancelled)
            await self._record("pilot_cancelled", reason="the project ended")
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return PilotOutcome(decision=decision.decision, project_outcome=None)

    def _round_done(self) -> bool:
        return rules.round_done(self._state, self._replaced, self._running)

    async def _start_site(self, plan: SitePlanSpec, *, accepted: bool = False) -> SiteState:
        seq = len(self._state.sites) + 1
        site_id = ids.site(self._start.application_id, seq)
        start = SiteStart(
            site_id=site_id,
            application_id=self._start.application_id,
            programme_id=self._start.programme_id,
            title=self._start.title,
            seq=seq,
            round=self._state.round,
            plan=plan,
            params=self._start.params,
            accepted=accepted,
        )
        handle = await workflow.start_child_workflow(
            PilotSiteWorkflow.run,
            start,
            id=site_id,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        ends_at = plan.starts_at + plan.duration
        state = SiteState(
            site_id=site_id,
            application_id=self._start.application_id,
            title=self._start.title,
            seq=seq,
            round=self._state.round,
            clinic_id=plan.clinic_id,
            status=SiteStatus.accepted if accepted else SiteStatus.proposed,
            starts_at=plan.starts_at,
            ends_at=ends_at,
            report_by=ends_at + self._start.params.pilot_report_window,
            metrics=plan.metrics,
        )
        self._put_site(state)
        self._running += 1

        async def finished() -> None:
            self._put_site(await handle)
            self._running -= 1
            if self._site(site_id).status == SiteStatus.declined:
                await self._flag(site_id)

        asyncio.create_task(finished())  # noqa: RUF006  # awaited through _running
        return state

    async def _flag(self, site_id: str) -> None:
        site = self._site(site_id)
        reason = rules.declined(site)
        async with self._lock:
            self._set(flag_reason=reason)
            await self._record(
                "site_declined", reason=reason, notify_admins=self._admin_note(site_id, reason)
            )

    async def _evaluate(self) -> None:
        async with self._lock:
            self._set(status=PilotStatus.evaluating)
            found: EvaluatorFound = await write(
                acts.PilotActivities.find_evaluator,
                self._evaluator_request(None),
                local_from=PILOT_LOCAL_WRITES,
            )
            if found.evaluator is None:
                reason = found.refusal or "no evaluator"
                self._set(flag_reason=reason)
                await self._record(
                    "evaluation_unassigned",
                    reason=reason,
                    notify_admins=self._admin_note(f"evaluator-{self._state.round}", reason),
                )
            else:
                await self._assign(found.evaluator, None)
        await workflow.wait_condition(lambda: self._state.evaluation is not None)

    async def _assign(self, evaluator: Actor, by: Actor | None) -> None:
        self._set(evaluator_id=evaluator.user_id, flag_reason=None)
        note = self._note(
            f"evaluation:{self._state.round}",
            evaluator.user_id,
            NotificationKind.evaluation_requested,
            rules.evaluation_requested(self._start.title),
        )
        await self._record(
            "evaluation_requested", actor=by, reason=f"evaluator: {evaluator.name}", notify=[note]
        )

    def _evaluator_request(self, evaluator_id: str | None) -> EvaluatorRequest:
        return EvaluatorRequest(
            application_id=self._start.application_id,
            specialty=self._start.specialty,
            applicant_institution_id=self._start.applicant_institution_id,
            partner_institutions=self._start.partner_institutions,
            evaluator_id=evaluator_id,
        )

    async def _extend(self, decision: PilotDecision) -> None:
        async with self._lock:
            self._set(
                status=PilotStatus.running,
                round=self._state.round + 1,
                evaluation=None,
                decision=None,
            )
            assert decision.extension is not None
            for site_id in decision.extend_sites:
                site = self._site(site_id)
                plan = SitePlanSpec(
                    clinic_id=site.clinic_id,
                    starts_at=workflow.now(),
                    duration=decision.extension,
                    metrics=site.metrics,
                )
                await self._start_site(plan, accepted=True)
            await self._record("pilot_extended", actor=decision.actor, reason=decision.reason)

    def _admin_note(self, what: str, reason: str) -> NewNotification:
        text = rules.needs_an_admin(self._start.title, reason)
        # user_id: one copy per admin, filled in by the activity
        return self._note(what, "", NotificationKind.pilot_attention, text)

    def _note(self, what: str, user_id: str, kind: NotificationKind, text: Text) -> NewNotification:
        return NewNotification(
            key=f"pilot-{self._start.application_id}:{what}",
            user_id=user_id,
            kind=kind,
            subject=text.subject,
            body=text.body,
            created_at=workflow.now(),
            application_id=self._start.application_id,
        )

    def _site(self, site_id: str) -> SiteState:
        for site in self._state.sites:
            if site.site_id == site_id:
                return site
        raise ApplicationError(f"there is no site {site_id} in this pilot")

    def _put_site(self, state: SiteState) -> None:
        sites = [s for s in self._state.sites if s.site_id != state.site_id]
        self._set(sites=sorted([*sites, state], key=lambda s: s.seq))

    def _set(self, **changes: object) -> None:
        self._state = self._state.model_copy(update=changes)

    async def _record(
        self,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        notify: list[NewNotification] | None = None,
        notify_admins: NewNotification | None = None,
    ) -> None:
        self._version += 1
        await write(
            acts.PilotActivities.record_pilot,
            PilotChange(
                version=self._version,
                kind=kind,
                at=workflow.now(),
                state=self._state,
                programme_id=self._start.programme_id,
                actor=actor,
                reason=reason,
                notify=notify or [],
                notify_admins=notify_admins,
            ),
            local_from=PILOT_LOCAL_WRITES,
        )
        self._changes += 1

    # --- admins' and the evaluator's updates ----------------------------------------------

    @workflow.update
    async def propose_site(self, proposal: SiteProposal) -> PilotState:
        """An admin replaces a declined site with another clinic (same round)."""
        async with self._lock:
            self._replaced.add(proposal.replaces)
            self._set(flag_reason=None)
            site = await self._start_site(proposal.plan)
            await self._record(
                "site_replaced",
                actor=proposal.actor,
                reason=f"{proposal.replaces} replaced by {site.site_id} at {site.clinic_id}",
            )
        return self._state

    @propose_site.validator
    def _validate_propose_site(self, proposal: SiteProposal) -> None:
        self._check_admin(proposal.actor)
        site = self._site(proposal.replaces)
        if site.status != SiteStatus.declined or proposal.replaces in self._replaced:
            raise ApplicationError(f"{proposal.replaces} is {site.status}: nothing to replace")

    @workflow.update
    async def assign_evaluator(self, assignment: EvaluatorAssignment) -> PilotState:
        """An admin names the evaluator when no eligible expert was found (same rules)."""
        async with self._lock:
            found: EvaluatorFound = await write(
                acts.PilotActivities.find_evaluator,
                self._evaluator_request(assignment.evaluator_id),
                local_from=PILOT_LOCAL_WRITES,
            )
            if found.evaluator is None:
                raise ApplicationError(found.refusal or "not eligible")
            await self._assign(found.evaluator, assignment.actor)
        return self._state

    @assign_evaluator.validator
    def _validate_assign_evaluator(self, assignment: EvaluatorAssignment) -> None:
        self._check_admin(assignment.actor)
        if self._state.status != PilotStatus.evaluating or self._state.evaluation is not None:
            raise ApplicationError(f"the pilot is {self._state.status}, not waiting for one")

    @workflow.update
    async def evaluate(self, submission: EvaluationSubmission) -> PilotState:
        """The evaluator's recommendation, with every site's results against its targets."""
        async with self._lock:
            evaluation = Evaluation(
                recommendation=submission.recommendation,
                comments=submission.comments,
                evaluator_id=submission.actor.user_id,
                at=workflow.now(),
                results={
                    s.site_id: s.results
                    for s in self._state.sites
                    if s.round == self._state.round and s.status == SiteStatus.completed
                },
            )
            self._set(status=PilotStatus.deciding, evaluation=evaluation)
            await self._record(
                "pilot_evaluated",
                actor=submission.actor,
                reason=f"recommends {submission.recommendation}",
                notify_admins=self._admin_note(
                    f"decide-{self._state.round}",
                    f"The evaluation recommends {submission.recommendation}: please decide.",
                ),
            )
        return self._state

    @evaluate.validator
    def _validate_evaluate(self, submission: EvaluationSubmission) -> None:
        if submission.actor.user_id != self._state.evaluator_id:
            raise ApplicationError("only the pilot's evaluator can evaluate it")
        if self._state.status != PilotStatus.evaluating:
            raise ApplicationError(f"the pilot is {self._state.status}, not being evaluated")

    @workflow.update
    async def decide(self, decision: PilotDecision) -> PilotState:
        """An admin decides, with the evaluation attached: implement, extend or stop."""
        round_ = self._state.round
        async with self._lock:
            final = {
                Recommendation.implement: PilotStatus.implement,
                Recommendation.stop: PilotStatus.stop,
            }
            decided = decision.model_copy(update={"at": workflow.now()})
            self._set(decision=decided, status=final.get(decision.decision, PilotStatus.deciding))
            await self._record(
                f"pilot_{decision.decision}", actor=decision.actor, reason=decision.reason
            )
        if decision.decision == Recommendation.extend:
            # Answer with the new round's sites, not the decided state.
            await workflow.wait_condition(lambda: self._state.round > round_)
        return self._state

    @decide.validator
    def _validate_decide(self, decision: PilotDecision) -> None:
        self._check_admin(decision.actor)
        if self._state.status != PilotStatus.deciding or self._state.decision is not None:
            raise ApplicationError(f"the pilot is {self._state.status}, not waiting for a decision")
        for site_id in decision.extend_sites:
            site = self._site(site_id)
            if site.round != self._state.round or site.status != SiteStatus.completed:
                raise ApplicationError(f"{site_id} did not complete this round: cannot extend it")

    def _check_admin(self, actor: Actor) -> None:
        if actor.role != Role.admin:
            raise ApplicationError("only an admin can do this")

    @workflow.query
    def state(self) -> PilotState:
        """The pilot: its sites, the evaluation and the decision."""
        return self._state

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """While the sites run, `ask` names the open sites' workflows; then the evaluator,
        then the admins' decision. A flag (a declined site, no evaluator) waits on the admins."""
        return rules.pilot_waiting(workflow.info().workflow_id, self._state)
