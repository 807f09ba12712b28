"""The pilot site workflow: one clinic's part of a pilot, a child of the pilot's workflow.

proposed → accepted by the clinic's coordinator (or declined with a reason) → running from its
planned start → reported with the measured metrics → completed. A site that has not reported
by `pilot_report_window` after its period ends is reminded `reminder_lead_time` before that
deadline, then escalated to the admins (and still takes the report).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import pilot as acts
    from schemas.common import Actor, Role
    from schemas.history import WaitingAnswer
    from schemas.notifications import NewNotification, NotificationKind
    from schemas.pilot import (
        SiteAnswer,
        SiteChange,
        SiteReport,
        SiteStart,
        SiteState,
        SiteStatus,
        results,
    )
    from workflows import pilot_rules as rules
    from workflows.deadline import sleep_until
    from workflows.options import write
    from workflows.pilot_rules import Text


# Its writes below are local activities from this patch on (options.write).
SITE_LOCAL_WRITES = "site-local-writes"


@workflow.defn(name="PilotSite")
class PilotSiteWorkflow:
    """One pilot site. Its id is `site-<application uuid>-<n>`."""

    @workflow.init
    def __init__(self, start: SiteStart) -> None:
        self._start = start
        plan = start.plan
        ends_at = plan.starts_at + plan.duration
        self._state = SiteState(
            site_id=start.site_id,
            application_id=start.application_id,
            title=start.title,
            seq=start.seq,
            round=start.round,
            clinic_id=plan.clinic_id,
            status=SiteStatus.accepted if start.accepted else SiteStatus.proposed,
            starts_at=plan.starts_at,
            ends_at=ends_at,
            report_by=ends_at + start.params.pilot_report_window,
            metrics=plan.metrics,
        )
        self._version = 0
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, start: SiteStart) -> SiteState:
        """Wait for the clinic, run the period, collect the report (reminding, escalating)."""
        try:
            await self._propose()
            if self._state.status == SiteStatus.declined:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self._state
            await self._wait_until(self._state.starts_at)
            await self._set(SiteStatus.running, "site_started")
            await self._collect_report()
        except asyncio.CancelledError:
            await self._set(SiteStatus.cancelled, "site_cancelled", reason="the pilot ended")
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _propose(self) -> None:
        if self._start.accepted:
            await self._record("site_extended")
            return
        await self._record(
            "site_proposed",
            coordinators=self._note(
                "proposed",
                NotificationKind.site_proposed,
                rules.site_proposed(
                    self._start.title, self._state.starts_at, self._start.plan.duration
                ),
            ),
        )
        await workflow.wait_condition(lambda: self._state.status != SiteStatus.proposed)

    async def _wait_until(self, at: datetime) -> None:
        if at > workflow.now():
            await workflow.sleep(at - workflow.now(), summary="site start")

    async def _collect_report(self) -> None:
        remind_at = rules.site_reminder_at(self._state, self._start.params.reminder_lead_time)
        for at, escalate in ((remind_at, False), (self._state.report_by, True)):
            summary = "site report escalation" if escalate else "site reminder"
            await sleep_until(at, self._reported, summary=summary)
            if self._reported():
                return
            async with self._lock:
                if self._reported():
                    return
                await self._remind(escalate)
        await workflow.wait_condition(self._reported)

    def _reported(self) -> bool:
        return self._state.status == SiteStatus.completed

    async def _remind(self, escalate: bool) -> None:
        by = self._state.report_by
        if not escalate:
            self._state = self._state.model_copy(update={"reminded": True})
            note = self._note(
                "reminder", NotificationKind.reminder, rules.site_report_due(self._start.title, by)
            )
            await self._record("site_reminder", coordinators=note)
            return
        self._state = self._state.model_copy(update={"escalated": True})
        await self._record(
            "site_overdue",
            reason=f"no site report by {by.isoformat()}",
            admins=self._note(
                "overdue",
                NotificationKind.site_overdue,
                rules.site_overdue(self._start.title, self._state.clinic_id, by),
            ),
        )

    def _note(self, what: str, kind: NotificationKind, text: Text) -> NewNotification:
        return NewNotification(
            key=f"{self._start.site_id}:{what}",
            user_id="",  # one copy per addressee, filled in by the activity
            kind=kind,
            subject=text.subject,
            body=text.body,
            created_at=workflow.now(),
            application_id=self._start.application_id,
        )

    async def _set(
        self,
        status: SiteStatus,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
    ) -> None:
        async with self._lock:
            self._state = self._state.model_copy(
                update={"status": status, "reason": reason or self._state.reason}
            )
            await self._record(kind, actor=actor, reason=reason)

    async def _record(
        self,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        coordinators: NewNotification | None = None,
        admins: NewNotification | None = None,
    ) -> None:
        self._version += 1
        await write(
            acts.PilotActivities.record_site,
            SiteChange(
                version=self._version,
                kind=kind,
                at=workflow.now(),
                state=self._state,
                programme_id=self._start.programme_id,
                actor=actor,
                reason=reason,
                notify_coordinators=coordinators,
                notify_admins=admins,
            ),
            local_from=SITE_LOCAL_WRITES,
        )

    # --- the clinic coordinator's updates -------------------------------------------------

    @workflow.update
    async def answer(self, answer: SiteAnswer) -> SiteState:
        """The clinic's coordinator accepts the pilot at the clinic, or declines with a reason
        (an admin then proposes another clinic)."""
        self._check_status(SiteStatus.proposed)  # a second answer validated with this one
        if answer.accept:
            await self._set(SiteStatus.accepted, "site_accepted", actor=answer.actor)
        else:
            await self._set(
                SiteStatus.declined, "site_declined", actor=answer.actor, reason=answer.reason
            )
        return self._state

    @answer.validator
    def _validate_answer(self, answer: SiteAnswer) -> None:
        self._check_coordinator(answer.actor)
        self._check_status(SiteStatus.proposed)
        if not answer.accept and not answer.reason:
            raise ApplicationError("a decline needs a reason")

    @workflow.update
    async def report(self, report: SiteReport) -> SiteState:
        """The site's report: the measured value of every planned metric; completes the site."""
        async with self._lock:
            self._check_status(SiteStatus.running)
            self._state = self._state.model_copy(
                update={
                    "status": SiteStatus.completed,
                    "results": results(self._state.metrics, report.measured),
                    "comments": report.comments,
                }
            )
            await self._record("site_reported", actor=report.actor)
        return self._state

    @report.validator
    def _validate_report(self, report: SiteReport) -> None:
        self._check_coordinator(report.actor)
        self._check_status(SiteStatus.running)
        if workflow.now() < self._state.ends_at:
            raise ApplicationError(f"the pilot runs here until {self._state.ends_at.isoformat()}")
        planned = {m.name for m in self._state.metrics}
        if missing := sorted(planned - report.measured.keys()):
            raise ApplicationError(f"missing metrics: {', '.join(missing)}")
        if extra := sorted(report.measured.keys() - planned):
            raise ApplicationError(f"metrics not in the plan: {', '.join(extra)}")

    def _check_status(self, expected: SiteStatus) -> None:
        if self._state.status != expected:
            raise ApplicationError(f"the site is {self._state.status}, not {expected}")

    def _check_coordinator(self, actor: Actor) -> None:
        if actor.role != Role.coordinator or actor.institution_id != self._state.clinic_id:
            raise ApplicationError("only the coordinator of this clinic can do this")

    @workflow.query
    def state(self) -> SiteState:
        """The site: status, period, deadline, planned metrics and results."""
        return self._state

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """The clinic's answer to the proposal, the start of the period, then the clinic's
        report of the measured metrics (reminded, then escalated to the admins)."""
        wid, lead = workflow.info().workflow_id, self._start.params.reminder_lead_time
        waiting = rules.site_waiting(wid, self._state, lead, workflow.now())
        return WaitingAnswer(workflow_id=wid, waiting=[waiting] if waiting else [])
