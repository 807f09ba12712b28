"""The application workflow's book: its one state model, and the write that records each stage
change (in Postgres, the audit trail and the `Stage` search attribute together). The base of
the screening part (workflows/screening.py) and of `ApplicationWorkflow`
(workflows/application.py), which decide when each change happens."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities import application as acts
    from schemas.admin import RescreenRequest
    from schemas.agreement import ProjectOutcome
    from schemas.application import (
        ApplicationStart,
        ContentSpec,
        Finding,
        RevisionRequest,
        StageChange,
        WaitingFor,
    )
    from schemas.common import Actor, Role, Stage
    from schemas.council import Decision
    from schemas.pilot import PilotPlanRequest
    from schemas.programme import ProgrammeStart
    from workflows import application_rules as rules
    from workflows.deadline import Deadline
    from workflows.options import write

STAGE = SearchAttributeKey.for_keyword("Stage")
PROGRAMME = SearchAttributeKey.for_keyword("ProgrammeId")
# The registration and the stage changes: local activities from this patch on (options.write).
LOCAL_WRITES = "application-local-writes"
# A stage change is taken once its write succeeded: before this patch the workflow took the
# new stage first, and kept it (its run moving on) when the write was refused.
STAGE_AFTER_WRITE = "application-stage-after-write"

R = TypeVar("R")


@dataclass
class ApplicationState:
    """Everything the application workflow knows, in one place."""

    programme: ProgrammeStart  # as screening reads it (an admin's re-screening replaces it)
    content: ContentSpec  # as last submitted
    stage: Stage = Stage.submitted
    seq: int = 0  # stage changes made
    recorded: int = 0  # seq of the last change on record
    waiting: WaitingFor | None = None  # who must act next
    findings: list[Finding] = field(default_factory=list)  # the last screening's
    screenings: int = 0  # a pending `revise` or `rescreen` returns once this grows
    revision_by: Deadline | None = None  # the revision window, moved by an admin's extension
    revision: RevisionRequest | None = None  # the applicant's, not screened yet
    rescreen: RescreenRequest | None = None  # an admin's, not screened yet
    session_id: str | None = None  # the council session it is on the agenda of
    council_inbox: list[str | Decision] = field(default_factory=list)  # agendas and decisions
    agreement_accepted: bool = False  # the agreement workflow's signal
    pilot_plan: PilotPlanRequest | None = None
    ended_by: StageChange | None = None  # the change to the final stage
    wound_down: bool = False  # final, and its children ended (money back in the budget)
    # Kept for the `record` query only: assigning them issues no command.
    approved_rub: int | None = None
    outcome: ProjectOutcome | None = None


class Child(Generic[R]):
    """A child workflow (review, agreement, pilot) and the task awaiting its result."""

    def __init__(self, handle: workflow.ChildWorkflowHandle[Any, R]) -> None:
        self.handle = handle
        self._result: list[R] = []
        self._task = asyncio.create_task(self._wait())

    async def _wait(self) -> None:
        self._result.append(await self.handle)

    def done(self) -> bool:
        return self._task.done()

    def result(self) -> R:
        """Its result once done (its failure raised here)."""
        self._task.result()
        return self._result[0]

    async def cancel(self) -> None:
        """Cancel it and wait until it has ended (its own cleanup included)."""
        self.handle.cancel()
        with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
            await self._task


class ApplicationBook:
    """One application's state and its record."""

    def __init__(self, start: ApplicationStart) -> None:
        self._start = start
        self._state = ApplicationState(programme=start.programme, content=start.content)
        self._lock = asyncio.Lock()  # a withdrawal never interleaves with another change

    def _at(self, stage: Stage) -> bool:
        return self._state.stage == stage

    def _applicant_or_admin(self, actor: Actor) -> bool:
        return actor.role == Role.admin or actor.user_id == self._start.applicant.user_id

    def _ended(self) -> bool:
        """In a final stage, and that stage is on record."""
        return self._state.stage.is_final and self._state.recorded == self._state.seq

    async def _register(self) -> None:
        """submitted → screening: the application goes on record."""
        async with self._lock:
            self._state.seq, self._state.stage = 1, Stage.screening
            self._state.waiting = rules.SCREENING
            await write(
                acts.ApplicationActivities.register_application,
                self._start,
                local_from=LOCAL_WRITES,
            )
            self._state.recorded = 1
            # Postgres says `screening` from here on: so does Temporal's Stage, which said
            # `submitted` until the first screening's outcome before this patch.
            if workflow.patched("stage-screening-on-register"):
                workflow.upsert_search_attributes([STAGE.value_set(Stage.screening.value)])

    async def _change(
        self,
        stage: Stage,
        kind: str,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        content: ContentSpec | None = None,
        waiting: WaitingFor | None = None,
        review_score: float | None = None,
        review_spread: float | None = None,
        outcome: ProjectOutcome | None = None,
    ) -> bool:
        """Record a stage change; the lock keeps a withdrawal from interleaving with screening.
        Returns False when the application had already reached a final stage. A write that
        fails (refused for its data, or out of attempts) raises here with the stage as it was:
        the workflow never holds a stage its row does not (runs before the patch took it first)."""
        state = self._state
        async with self._lock:
            if state.stage.is_final:
                return False
            change = StageChange(
                application_id=self._start.application_id,
                workflow_id=workflow.info().workflow_id,
                seq=state.seq + 1,
                stage=stage,
                kind=kind,
                at=workflow.now(),
                actor=actor,
                reason=reason,
                findings=state.findings if stage != Stage.screening else [],
                action_required=waiting.what if waiting and waiting.who == "applicant" else None,
                deadline=waiting.by if waiting else None,
                content=content,
                review_score=review_score,
                review_spread=review_spread,
                outcome=outcome,
            )
            if workflow.patched(STAGE_AFTER_WRITE):
                await self._record_change(change)
                self._take(change, waiting)
            else:
                self._take(change, waiting)
                await self._record_change(change)
            state.recorded = state.seq
            workflow.upsert_search_attributes([STAGE.value_set(stage.value)])
            return True

    def _take(self, change: StageChange, waiting: WaitingFor | None) -> None:
        """The change becomes the workflow's stage."""
        state = self._state
        state.seq, state.stage = change.seq, change.stage
        state.waiting = None if change.stage.is_final else waiting
        state.outcome = change.outcome or state.outcome
        if change.stage.is_final:
            state.ended_by = change

    async def _record_change(self, change: StageChange) -> None:
        await write(acts.ApplicationActivities.record_stage_change, change, local_from=LOCAL_WRITES)
