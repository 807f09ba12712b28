"""Writes of the pilot and site workflows, with their audit events and notifications, and the
choice of the pilot's evaluator."""

from __future__ import annotations

import functools

import structlog
from temporalio import activity

from activities import Recorder, refuses_bad_data
from grantflow.store import Conn, audit, in_transaction, notifications, pilot, review
from schemas.notifications import NewNotification
from schemas.pilot import EvaluatorFound, EvaluatorRequest, PilotChange, SiteChange
from workflows import ids

log = structlog.get_logger(__name__)


class PilotActivities(Recorder):
    """Bound to the worker's connection pool and notification sender."""

    @activity.defn
    @refuses_bad_data
    async def record_site(self, change: SiteChange) -> None:
        """Write the site as its workflow holds it, with the audit event and its notifications
        (to every coordinator of the clinic, or every admin); then deliver them.

        Idempotent: the row only moves forward (its `version` must be below the change's), the
        event key is `<site id>:<version>`, and notifications are keyed."""
        write = functools.partial(_write_site, change)
        if change.notify_coordinators is None and change.notify_admins is None:
            # The row and its event are one statement: one round trip instead of four.
            await in_transaction(self._pool, write, single_statement=True)
        else:
            await self._record(write)
        log.info("site change", site_id=change.state.site_id, kind=change.kind)

    @activity.defn
    @refuses_bad_data
    async def record_pilot(self, change: PilotChange) -> None:
        """Write the pilot as its workflow holds it, with the audit event and notifications.

        Idempotent: the row only moves forward (its `version` must be below the change's), the
        event key is `pilot-<application id>:<version>`, and notifications are keyed."""
        write = functools.partial(_write_pilot, change)
        if not change.notify and change.notify_admins is None:
            # The row and its event are one statement: one round trip instead of four.
            await in_transaction(self._pool, write, single_statement=True)
        else:
            await self._record(write)
        log.info("pilot change", application_id=change.state.application_id, kind=change.kind)

    @activity.defn
    async def find_evaluator(self, request: EvaluatorRequest) -> EvaluatorFound:
        """The pilot's independent expert, by the review stage's matching and conflict rules.

        Idempotent: it only reads; the workflow records the choice. (In a transaction all the
        same: the specialty's lock, which keeps experts' loads in step, lasts until its end.)"""
        evaluator, refusal = await in_transaction(
            self._pool, lambda conn: pilot.find_evaluator(conn, request)
        )
        return EvaluatorFound(evaluator=evaluator, refusal=refusal)


async def _write_site(change: SiteChange, conn: Conn) -> list[NewNotification]:
    notes = await notifications.copies(
        change.notify_coordinators,
        functools.partial(pilot.coordinators, conn, change.state.clinic_id),
    ) + await notifications.copies(change.notify_admins, functools.partial(review.admins, conn))
    event = _event(
        change,
        event_key=f"{change.state.site_id}:{change.version}",
        workflow_id=change.state.site_id,
        detail={"site_id": change.state.site_id, "clinic_id": change.state.clinic_id},
    )
    await pilot.save_site(conn, change.state, change.programme_id, change.version, change.at, event)
    await notifications.add(conn, notes)
    return notes


async def _write_pilot(change: PilotChange, conn: Conn) -> list[NewNotification]:
    notes = list(change.notify) + await notifications.copies(
        change.notify_admins, functools.partial(review.admins, conn)
    )
    event = _event(
        change,
        event_key=f"pilot-{change.state.application_id}:{change.version}",
        workflow_id=ids.pilot(change.state.application_id),
        detail={"status": change.state.status.value, "round": change.state.round},
    )
    await pilot.save_pilot(
        conn, change.state, change.programme_id, change.version, change.at, event
    )
    await notifications.add(conn, notes)
    return notes


def _event(
    change: SiteChange | PilotChange,
    *,
    event_key: str,
    workflow_id: str,
    detail: dict[str, object],
) -> tuple[object, ...]:
    """The change's audit event, as `audit.event_args` gives it."""
    return audit.event_args(
        event_key=event_key,
        workflow_id=workflow_id,
        kind=change.kind,
        at=change.at,
        application_id=change.state.application_id,
        programme_id=change.programme_id,
        actor=change.actor,
        reason=change.reason,
        detail=detail,
    )
