"""Activities under the real activity names that write nothing: each keeps what its workflow
told it, for the test to read, and answers as the database would for a few people. With them the
real workflows run on the time-skipping test server without PostgreSQL.

Only the application, review and council stages' activities are here: a test that reached the
agreement would find none to run (and say so in the worker's log)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity, workflow

from schemas.application import ApplicationStart, StageChange
from schemas.common import Actor
from schemas.council import AgendaItem, Decision, Reservation, Reserved, SessionStart, VoteRecord
from schemas.review import Offered, OfferRequest, ReviewChange

T = TypeVar("T")


class FakeActivities:
    """The worker's side effects, in memory. `experts` are offered review tasks in their
    order; `agenda` is what a council session takes; `budget_rub` is what it may reserve."""

    def __init__(self) -> None:
        self.experts: list[Actor] = []
        self.agenda: list[AgendaItem] = []
        self.budget_rub = 0
        self.calls: list[tuple[str, Any]] = []  # (activity name, its argument), in order
        self.workflow_ids: list[str] = []  # every workflow that ran an activity, first seen
        self._offers: dict[str, Actor] = {}  # task id -> reviewer, so a retry answers the same
        self._offered: dict[str, list[str]] = defaultdict(list)  # application -> reviewer ids
        self._ledger: dict[str, int] = {}  # reservation key -> amount (released: negative)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.register_application,
            self.record_stage_change,
            self.offer_task,
            self.record_change,
            self.open_session,
            self.record_vote,
            self.reserve,
            self.release,
            self.record_decision,
            self.close_session,
        ]

    def told(self, name: str, kind: type[T]) -> list[T]:
        """The arguments `name` was called with, oldest first."""
        return [arg for called, arg in self.calls if called == name and isinstance(arg, kind)]

    @property
    def reserved_rub(self) -> int:
        return sum(self._ledger.values())

    def _saw(self, arg: object) -> None:
        info = activity.info()
        self.calls.append((info.activity_type, arg))
        if info.workflow_id and info.workflow_id not in self.workflow_ids:
            self.workflow_ids.append(info.workflow_id)

    # --- application ---------------------------------------------------------------------------

    @activity.defn(name="register_application")
    async def register_application(self, start: ApplicationStart) -> None:
        self._saw(start)

    @activity.defn(name="record_stage_change")
    async def record_stage_change(self, change: StageChange) -> None:
        self._saw(change)

    # --- review --------------------------------------------------------------------------------

    @activity.defn(name="offer_task")
    async def offer_task(self, request: OfferRequest) -> Offered:
        """The first expert not offered this application yet and not of the applicant's
        institution or its partners; or the admin's choice, under the same rules."""
        self._saw(request)
        if request.task_id in self._offers:
            return Offered(reviewer=self._offers[request.task_id])
        barred = {request.applicant_institution_id, *request.partner_institutions}
        taken = self._offered[request.application_id]
        eligible = [
            e for e in self.experts if e.user_id not in taken and e.institution_id not in barred
        ]
        if request.reviewer_id is not None:
            eligible = [e for e in eligible if e.user_id == request.reviewer_id]
        if not eligible:
            return Offered(reviewer=None, refusal="no eligible expert")
        self._offers[request.task_id] = eligible[0]
        taken.append(eligible[0].user_id)
        return Offered(reviewer=eligible[0])

    @activity.defn(name="record_change")
    async def record_change(self, change: ReviewChange) -> None:
        self._saw(change)

    # --- council -------------------------------------------------------------------------------

    @activity.defn(name="open_session")
    async def open_session(self, start: SessionStart) -> list[AgendaItem]:
        self._saw(start)
        return self.agenda

    @activity.defn(name="record_vote")
    async def record_vote(self, record: VoteRecord) -> None:
        self._saw(record)

    @activity.defn(name="reserve")
    async def reserve(self, reservation: Reservation) -> Reserved:
        """Reserves the amount if the budget still covers it; a retried key answers as before."""
        self._saw(reservation)
        if reservation.key not in self._ledger:
            if self.reserved_rub + reservation.amount_rub > self.budget_rub:
                return Reserved(ok=False, remaining_rub=self.budget_rub - self.reserved_rub)
            self._ledger[reservation.key] = reservation.amount_rub
        return Reserved(ok=True, remaining_rub=self.budget_rub - self.reserved_rub)

    @activity.defn(name="release")
    async def release(self, reservation: Reservation) -> int:
        self._saw(reservation)
        self._ledger.setdefault(reservation.key, -reservation.amount_rub)
        return reservation.amount_rub

    @activity.defn(name="record_decision")
    async def record_decision(self, decision: Decision) -> None:
        self._saw(decision)

    @activity.defn(name="close_session")
    async def close_session(self, session_id: str) -> None:
        self._saw(session_id)


@workflow.defn(name="Application", sandboxed=False)
class ApplicationStub:
    """Stands in for an application's workflow before a council session: it keeps what the
    session signals it, and ends with the decision."""

    def __init__(self) -> None:
        self._heard: list[str] = []
        self._decided = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._decided)

    @workflow.signal(name="enter_council")
    def enter_council(self, session_id: str) -> None:
        self._heard.append(f"on the agenda of {session_id}")

    @workflow.signal(name="council_decision")
    def council_decision(self, decision: Decision) -> None:
        self._heard.append(f"{decision.outcome.value} {decision.amount_rub}: {decision.reason}")
        self._decided = True

    @workflow.query
    def heard(self) -> list[str]:
        return self._heard
