"""The programme workflow: opens and closes a call's intake on its own timers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import programme as acts
    from schemas.common import Role
    from schemas.programme import (
        ChangesSpec,
        IntakeChange,
        IntakeState,
        ProgrammeCorrected,
        ProgrammeCorrection,
        ProgrammeCreate,
        ProgrammeSpec,
        ProgrammeStart,
    )
    from workflows.options import write


@workflow.defn(name="Programme")
class ProgrammeWorkflow:
    """A call for applications. Its id is `programme-<uuid>`."""

    @workflow.init
    def __init__(self, start: ProgrammeStart) -> None:
        self._start = start
        self._state: IntakeState | None = None
        self._lock = asyncio.Lock()  # one correction at a time, each on the one before

    @workflow.run
    async def run(self, start: ProgrammeStart) -> IntakeState:
        """Record the programme, then move its intake scheduled -> open -> closed on time."""
        spec = start.spec
        await self._record(self._state_at_now(), register=True)
        for state, at in (
            (IntakeState.open, spec.intake_opens),
            (IntakeState.closed, spec.intake_closes),
        ):
            if self._state is not None and _order(self._state) >= _order(state):
                continue
            wait = at - workflow.now()
            if wait > timedelta(0):
                await workflow.sleep(wait, summary=f"intake {state.value}")
            await self._record(state)
        # A correction may arrive at any time; after intake closed it starts a fresh run of
        # this workflow (services/programme.py `correct`), which ends once the correction is on
        # record.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return IntakeState.closed

    def _state_at_now(self) -> IntakeState:
        now, spec = workflow.now(), self._start.spec
        if now < spec.intake_opens:
            return IntakeState.scheduled
        return IntakeState.open if now < spec.intake_closes else IntakeState.closed

    async def _record(self, state: IntakeState, *, register: bool = False) -> None:
        change = IntakeChange(programme_id=self._start.programme_id, state=state, at=workflow.now())
        if register:
            await write(acts.ProgrammeActivities.register_programme, self._start)
        await write(acts.ProgrammeActivities.record_intake_change, change)
        self._state = state

    @workflow.update
    async def registered(self) -> IntakeState:
        """Returns once the programme is on record: the creation's acknowledgement."""
        await workflow.wait_condition(lambda: self._state is not None)
        assert self._state is not None
        return self._state

    @workflow.update
    async def correct(self, correction: ProgrammeCorrection) -> ProgrammeStart:
        """An admin corrects screening rules entered wrong (limits, admitted organisation
        types, specialties), with a reason. Applications screened from now on, and those an
        admin re-screens, follow the corrected rules; returns the programme as corrected."""
        async with self._lock:
            corrected, changed = _corrected(self._start, correction.changes)
            await write(
                acts.ProgrammeActivities.record_correction,
                ProgrammeCorrected(
                    correction_id=correction.correction_id,
                    actor=correction.actor,
                    reason=correction.reason,
                    programme=corrected,
                    changed=changed,
                ),
            )
            self._start = corrected
        return corrected

    @correct.validator
    def _validate_correct(self, correction: ProgrammeCorrection) -> None:
        if correction.actor.role != Role.admin:
            raise ApplicationError("only an admin can correct a programme")
        if not correction.reason.strip():
            raise ApplicationError("a reason is required")
        if problem := _invalid(self._start, correction.changes):
            raise ApplicationError(problem)
        if not _corrected(self._start, correction.changes)[1]:
            raise ApplicationError("nothing to correct: the programme already says so")

    @workflow.query
    def intake(self) -> IntakeState | None:
        """The intake's state as this workflow last recorded it."""
        return self._state


def _order(state: IntakeState) -> int:
    return [IntakeState.scheduled, IntakeState.open, IntakeState.closed].index(state)


def _merged(start: ProgrammeStart, changes: ChangesSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The programme as it stands and the fields the changes give, as JSON."""
    return start.spec.model_dump(mode="json"), changes.model_dump(mode="json", exclude_none=True)


def _corrected(
    start: ProgrammeStart, changes: ChangesSpec
) -> tuple[ProgrammeStart, dict[str, list[object]]]:
    """The programme with `changes` applied, and what changed (field: [was, now])."""
    current, given = _merged(start, changes)
    changed = {k: [current[k], v] for k, v in given.items() if current[k] != v}
    spec = ProgrammeSpec.model_validate({**current, **given})
    return start.model_copy(update={"spec": spec}), changed


def _invalid(start: ProgrammeStart, changes: ChangesSpec) -> str | None:
    """Why the corrected programme would be refused as a new one (None: it would not). The
    validator's check only, never the handler's: replays do not run validators, so a limit
    of `ProgrammeCreate` tightened later cannot refuse a correction already on record."""
    current, given = _merged(start, changes)
    try:
        ProgrammeCreate.model_validate({**current, **given})
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]) for e in exc.errors())
        return f"the corrected programme is not valid: {reasons}"
    return None
