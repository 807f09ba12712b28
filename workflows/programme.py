"""The programme workflow: opens and closes a call's intake on its own timers."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import programmes as acts
    from schemas.programmes import IntakeChange, IntakeState, ProgrammeStart
    from workflows.options import WRITE_RETRY, WRITE_TIMEOUT


@workflow.defn(name="Programme")
class ProgrammeWorkflow:
    """A call for applications. Its id is `programme-<uuid>`."""

    @workflow.init
    def __init__(self, start: ProgrammeStart) -> None:
        self._start = start
        self._state: IntakeState | None = None

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
        return IntakeState.closed

    def _state_at_now(self) -> IntakeState:
        now, spec = workflow.now(), self._start.spec
        if now < spec.intake_opens:
            return IntakeState.scheduled
        return IntakeState.open if now < spec.intake_closes else IntakeState.closed

    async def _record(self, state: IntakeState, *, register: bool = False) -> None:
        change = IntakeChange(programme_id=self._start.programme_id, state=state, at=workflow.now())
        if register:
            await workflow.execute_activity_method(
                acts.ProgrammeActivities.register_programme,
                self._start,
                start_to_close_timeout=WRITE_TIMEOUT,
                retry_policy=WRITE_RETRY,
            )
        await workflow.execute_activity_method(
            acts.ProgrammeActivities.record_intake_change,
            change,
            start_to_close_timeout=WRITE_TIMEOUT,
            retry_policy=WRITE_RETRY,
        )
        self._state = state

    @workflow.update
    async def registered(self) -> IntakeState:
        """Returns once the programme is on record: the creation's acknowledgement."""
        await workflow.wait_condition(lambda: self._state is not None)
        assert self._state is not None
        return self._state

    @workflow.query
    def intake(self) -> IntakeState | None:
        """The intake's state as this workflow last recorded it."""
        return self._state


def _order(state: IntakeState) -> int:
    return [IntakeState.scheduled, IntakeState.open, IntakeState.closed].index(state)
