"""The agreement workflow's book: the agreement's state, and the writes that record each of its
changes and move its money (a tranche paid, the unspent rest returned to the budget). The base
of the reporting part (workflows/reporting.py) and of `AgreementWorkflow`
(workflows/agreement.py), which decide when each happens."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import agreement as acts
    from schemas.agreement import (
        AgreementAction,
        AgreementChange,
        AgreementOutcome,
        AgreementStart,
        AgreementState,
        AgreementStatus,
        AgreementStop,
        ProjectOutcome,
        Report,
        Tranche,
        TrancheStatus,
    )
    from schemas.common import Actor
    from schemas.council import Reservation
    from schemas.notifications import NewNotification, NotificationKind
    from workflows.agreement_rules import Text, split, tranche_count
    from workflows.options import write


class AgreementBook:
    """One approved project's agreement, tranches and reports, and their record."""

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

    def _report(self, seq: int) -> Report:
        if not 1 <= seq <= len(self._state.reports):
            raise ApplicationError(f"there is no report {seq}")
        return self._state.reports[seq - 1]

    def _put_report(self, report: Report) -> None:
        reports = list(self._state.reports)
        reports[report.seq - 1] = report
        self._state = self._state.model_copy(update={"reports": reports})

    async def _pay(self, seq: int) -> None:
        tranche = self._state.tranches[seq - 1]
        money = self._money(f"tranche:{seq}", tranche.amount_rub, f"tranche {seq}")
        await write(acts.AgreementActivities.disburse, money)
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
        money = self._money(f"release:{status.value}", self._start.amount_rub, reason)
        await write(acts.AgreementActivities.release_unspent, money)
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

    def _note(self, key: str, user_id: str, kind: NotificationKind, text: Text) -> NewNotification:
        return NewNotification(
            key=f"{self._start.application_id}:{key}",
            user_id=user_id,
            kind=kind,
            subject=text.subject,
            body=text.body,
            created_at=workflow.now(),
            application_id=self._start.application_id,
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
        change = AgreementChange(
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
        )
        await write(acts.AgreementActivities.record_agreement, change)
        self._changes += 1
