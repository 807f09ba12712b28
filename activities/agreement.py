"""Writes of the agreement workflow: the agreement, its tranches and reports, and the money."""

from __future__ import annotations

import functools

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import Recorder, refuses_bad_data
from grantflow.store import Conn, agreement, audit, in_transaction, ledger, notifications, review
from schemas.agreement import AgreementChange, ReportReviewerFound, ReportReviewerRequest
from schemas.council import Reservation
from schemas.notifications import NewNotification

log = structlog.get_logger(__name__)


class AgreementActivities(Recorder):
    """Bound to the worker's connection pool."""

    @activity.defn
    @refuses_bad_data
    async def record_agreement(self, change: AgreementChange) -> None:
        """Write the agreement as the workflow holds it (one statement; of its tranches and
        reports only those that changed), with the audit event and its notifications
        (reminders to the applicant, overdue reports to every admin); then deliver the
        notifications.

        Idempotent: the row only moves forward (its `version` must be below the change's),
        the event key is `<workflow id>:<version>`, notifications are keyed, and delivery
        sends each notification at least once, skipping those marked sent."""
        await self._record(functools.partial(_write, change))

    @activity.defn
    async def find_report_reviewer(self, request: ReportReviewerRequest) -> ReportReviewerFound:
        """The expert for the project's reports, by the review stage's matching and conflict
        rules (or the admin's choice, checked by them).

        Idempotent: it only reads; the workflow records the choice."""
        async with self._pool.acquire() as conn:
            reviewer, refusal = await agreement.find_report_reviewer(conn, request)
        return ReportReviewerFound(reviewer=reviewer, refusal=refusal)

    @activity.defn
    @refuses_bad_data
    async def disburse(self, payment: Reservation) -> None:
        """Pay a tranche out of the application's reservation.

        Idempotent: the ledger entry's key is `<workflow id>:tranche:<n>`; a second call finds it
        and pays nothing. A tranche its reservation cannot cover is a bug, not a retry."""
        if not await in_transaction(self._pool, lambda conn: ledger.disburse(conn, payment)):
            raise ApplicationError(
                f"{payment.reason}: the reservation does not cover {payment.amount_rub}",
                non_retryable=True,
            )
        log.info("tranche paid", application_id=payment.application_id, amount=payment.amount_rub)

    @activity.defn
    @refuses_bad_data
    async def release_unspent(self, release: Reservation) -> int:
        """Return what is left of the application's reservation to the programme's budget.

        Idempotent: the entry's key is `<workflow id>:release:<status>`; a second call finds it
        and releases nothing."""
        released = await in_transaction(self._pool, lambda conn: ledger.release(conn, release))
        log.info("budget released", application_id=release.application_id, amount=released)
        return released


async def _write(change: AgreementChange, conn: Conn) -> list[NewNotification]:
    """The agreement's row, its notifications and audit event; returns the notifications."""
    notes = list(change.notify) + await notifications.copies(
        change.notify_admins, functools.partial(review.admins, conn)
    )
    await agreement.save(conn, change.state, change.programme_id, change.version)
    await notifications.add(conn, notes)
    await audit.append(
        conn,
        event_key=f"{change.workflow_id}:{change.version}",
        workflow_id=change.workflow_id,
        kind=change.kind,
        at=change.at,
        application_id=change.state.application_id,
        programme_id=change.programme_id,
        actor=change.actor,
        reason=change.reason,
        detail={"status": change.state.status.value},
    )
    return notes
