"""The council session workflow: an agenda from the reviews, votes, and decisions under the
programme's budget.

An admin opens a session; its agenda is taken from Postgres once. Members vote through
Updates; the chair decides items one by one or closes the session, which decides the rest.
An item is decided by the majority of the votes cast once the quorum has voted; an approval
reserves its amount in the programme's ledger, and one the budget cannot cover is refused
with the amount that remains. Each decision is sent to the application's workflow.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from workflows import ids

with workflow.unsafe.imports_passed_through():
    from activities import council as acts
    from schemas.common import Role
    from schemas.council import (
        AgendaItem,
        Choice,
        CloseRequest,
        DecideRequest,
        Decision,
        Outcome,
        Reservation,
        SessionStart,
        SessionState,
        Tally,
        VoteRecord,
        VoteRequest,
    )
    from schemas.history import Waiting, WaitingAnswer
    from workflows.council_rules import outcome_of, overspend, rub, tally
    from workflows.options import write

__all__ = ["CouncilSessionWorkflow", "outcome_of"]


# Its writes below are local activities from this patch on (options.write).
COUNCIL_LOCAL_WRITES = "council-local-writes"
# From this patch on the session takes its agenda in a local activity and tells every
# application on it at once (before, one signal and one workflow task after another).
OPEN_AT_ONCE = "council-open-at-once"
# From this patch on the decisions (on closing) are signalled all at once: one after another,
# each signal cost the session a round trip to the server, fifty of them for fifty items.
DECISIONS_AT_ONCE = "council-decisions-signals-at-once"


@workflow.defn(name="CouncilSession")
class CouncilSessionWorkflow:
    """One council session of one programme. Its id is `council-<session uuid>`."""

    @workflow.init
    def __init__(self, start: SessionStart) -> None:
        self._start = start
        self._agenda: dict[str, AgendaItem] = {}
        self._votes: dict[str, dict[str, VoteRequest]] = {}
        self._decisions: dict[str, Decision] = {}
        self._open = False
        self._close: CloseRequest | None = None
        self._lock = asyncio.Lock()
        self._members = {m.user_id for m in start.members}

    @workflow.run
    async def run(self, start: SessionStart) -> list[Decision]:
        """Take the agenda, put its applications in council, wait for the close."""
        agenda = await write(acts.CouncilActivities.open_session, start, local_from=OPEN_AT_ONCE)
        self._agenda = {item.application_id: item for item in agenda}
        self._votes = {item.application_id: {} for item in agenda}
        entered = [(item.application_id, "enter_council", start.session_id) for item in agenda]
        if workflow.patched(OPEN_AT_ONCE):
            # Nothing waits on one signal's outcome: they go out together, in agenda order.
            await asyncio.gather(*(self._tell(*signal) for signal in entered))
        else:
            for signal in entered:
                await self._tell(*signal)
        self._open = True
        await workflow.wait_condition(lambda: self._close is not None)
        close = self._close
        assert close is not None
        async with self._lock:
            undecided = [
                item
                for item in sorted(self._agenda.values(), key=lambda i: i.rank)
                if item.application_id not in self._decisions
            ]
            if workflow.patched(DECISIONS_AT_ONCE):
                # Decided in rank order (the budget's reservations), then sent all at once.
                decided = [
                    await self._decide(i, refuse_overspend=False, send=False) for i in undecided
                ]
                await asyncio.gather(*(self._send(decision) for decision in decided))
            else:
                for item in undecided:
                    await self._decide(item, refuse_overspend=False)
            await write(acts.CouncilActivities.close_session, self._start.session_id)
            self._open = False
        await workflow.wait_condition(workflow.all_handlers_finished)
        return list(self._decisions.values())

    def _application(self, application_id: str) -> workflow.ExternalWorkflowHandle[object]:
        return workflow.get_external_workflow_handle(ids.application(application_id))

    async def _decide(
        self, item: AgendaItem, *, refuse_overspend: bool, send: bool = True
    ) -> Decision:
        """The item's decision on record; sent to the application too unless `send` is False
        (then the caller sends it)."""
        votes = list(self._votes[item.application_id].values())
        outcome, amount, reason = outcome_of(votes, self._start.quorum, item.requested_rub)
        now = workflow.now()
        if outcome == Outcome.approved and amount is not None:
            reserved = await write(
                acts.CouncilActivities.reserve,
                Reservation(
                    key=f"approval:{self._start.session_id}:{item.application_id}",
                    programme_id=self._start.programme_id,
                    application_id=item.application_id,
                    amount_rub=amount,
                    reason=f"approved by {self._start.name}",
                    at=now,
                ),
                local_from=COUNCIL_LOCAL_WRITES,
            )
            if not reserved.ok:
                refusal = overspend(reserved.remaining_rub, amount)
                if refuse_overspend:
                    raise ApplicationError(refusal)
                outcome, amount, reason = Outcome.deferred, None, refusal
        decision = Decision(
            session_id=self._start.session_id,
            application_id=item.application_id,
            outcome=outcome,
            amount_rub=amount,
            reason=reason,
            tally=tally(votes),
            decided_at=now,
        )
        await write(
            acts.CouncilActivities.record_decision, decision, local_from=COUNCIL_LOCAL_WRITES
        )
        self._decisions[item.application_id] = decision
        if send:
            await self._send(decision)
        return decision

    async def _send(self, decision: Decision) -> None:
        """The decision to the application's workflow; an approval that finds the application
        ended meanwhile releases its money."""
        delivered = await self._tell(decision.application_id, "council_decision", decision)
        if not delivered and decision.amount_rub is not None:
            # The application ended meanwhile (withdrawn): its money goes back at once.
            await write(
                acts.CouncilActivities.release,
                Reservation(
                    key=f"release:{self._start.session_id}:{decision.application_id}",
                    programme_id=self._start.programme_id,
                    application_id=decision.application_id,
                    amount_rub=decision.amount_rub,
                    reason="the application ended before the decision reached it",
                    at=workflow.now(),
                ),
                local_from=COUNCIL_LOCAL_WRITES,
            )

    async def _tell(self, application_id: str, signal: str, arg: object) -> bool:
        """Signal the application's workflow; False when it has already ended."""
        try:
            await self._application(application_id).signal(signal, arg)
        except FailureError as exc:
            workflow.logger.warning(
                "application %s did not take %s: %s", application_id, signal, exc
            )
            return False
        return True

    # --- updates ------------------------------------------------------------------------------

    @workflow.update
    async def opened(self) -> SessionState:
        """Returns once the agenda is taken: what the admin who opened the session sees."""
        await workflow.wait_condition(lambda: self._open or self._close is not None)
        return self.state()

    @workflow.update
    async def vote(self, request: VoteRequest) -> Tally:
        """A member's vote on an agenda item (a second vote replaces the first)."""
        self._votes[request.application_id][request.actor.user_id] = request
        await write(
            acts.CouncilActivities.record_vote,
            VoteRecord(session_id=self._start.session_id, vote=request, at=workflow.now()),
            local_from=COUNCIL_LOCAL_WRITES,
        )
        return tally(list(self._votes[request.application_id].values()))

    @vote.validator
    def _validate_vote(self, request: VoteRequest) -> None:
        if request.actor.user_id not in self._members:
            raise ApplicationError("you are not a member of this council session")
        if not self._open or self._close is not None:
            raise ApplicationError(
                "the session is closed" if self._close else "the session is not open yet"
            )
        item = self._agenda.get(request.application_id)
        if item is None:
            raise ApplicationError("this application is not on the session's agenda")
        if request.application_id in self._decisions:
            raise ApplicationError("this item has already been decided")
        if request.amount_rub is not None:
            if request.choice != Choice.approve:
                raise ApplicationError("only an approval can name an amount")
            if request.amount_rub > item.requested_rub:
                raise ApplicationError(
                    f"the amount {rub(request.amount_rub)} is above the requested "
                    f"{rub(item.requested_rub)}"
                )

    @workflow.update
    async def decide(self, request: DecideRequest) -> Decision:
        """The chair decides one item now. An approval the budget cannot cover is refused,
        with the amount that remains; the item stays open for other votes."""
        async with self._lock:
            if request.application_id in self._decisions:
                raise ApplicationError("this item has already been decided")
            return await self._decide(self._agenda[request.application_id], refuse_overspend=True)

    @decide.validator
    def _validate_decide(self, request: DecideRequest) -> None:
        self._check_chair(request.actor.user_id, request.actor.role)
        if request.application_id not in self._agenda:
            raise ApplicationError("this application is not on the session's agenda")
        if request.application_id in self._decisions:
            raise ApplicationError("this item has already been decided")

    @workflow.update
    async def close(self, request: CloseRequest) -> list[Decision]:
        """The chair closes the session: every item not decided yet is decided now, in rank
        order; approvals the budget cannot cover are deferred with the reason."""
        self._close = request
        await workflow.wait_condition(lambda: not self._open)
        return sorted(self._decisions.values(), key=lambda d: self._agenda[d.application_id].rank)

    @close.validator
    def _validate_close(self, request: CloseRequest) -> None:
        self._check_chair(request.actor.user_id, request.actor.role)

    def _check_chair(self, user_id: str, role: Role) -> None:
        if user_id != self._start.chair_id and role != Role.admin:
            raise ApplicationError("only the chair or an admin can do this")
        if not self._open or self._close is not None:
            raise ApplicationError(
                "the session is closed" if self._close else "the session is not open yet"
            )

    def _not_open(self) -> str:
        return "the session is closed" if self._close else "the session is not open yet"

    @workflow.query
    def state(self) -> SessionState:
        """The agenda, the tally of votes on each item, and the decisions so far."""
        return SessionState(
            session_id=self._start.session_id,
            programme_id=self._start.programme_id,
            name=self._start.name,
            open=self._open and self._close is None,
            chair_id=self._start.chair_id,
            quorum=self._start.quorum,
            members=sorted(self._members),
            agenda=sorted(self._agenda.values(), key=lambda i: i.rank),
            tallies={k: tally(list(v.values())) for k, v in self._votes.items()},
            decisions=list(self._decisions.values()),
        )

    @workflow.query
    def waiting_for(self) -> WaitingAnswer:
        """For each undecided item: the members who have not voted yet, and the chair, who
        decides it or closes the session (closing decides every open item on the votes cast;
        without the quorum an item is deferred to a later session)."""
        wid = workflow.info().workflow_id
        if not self._open or self._close is not None:
            return WaitingAnswer(workflow_id=wid)
        names = {m.user_id: m.name for m in self._start.members}
        waiting = []
        for item in sorted(self._agenda.values(), key=lambda i: i.rank):
            if item.application_id in self._decisions:
                continue
            voted = self._votes[item.application_id]
            missing = sorted(m for m in self._members if m not in voted)
            if missing:
                waiting.append(
                    Waiting(
                        workflow_id=wid,
                        application_id=item.application_id,
                        who="council members " + ", ".join(names[m] for m in missing),
                        user_ids=missing,
                        what=f"vote on '{item.title}' ({len(voted)} of "
                        f"{self._start.quorum} votes needed for the quorum are in)",
                        otherwise="the item is decided on the votes cast when the session "
                        "closes; without the quorum it is deferred to a later session",
                    )
                )
            waiting.append(
                Waiting(
                    workflow_id=wid,
                    application_id=item.application_id,
                    who=f"the chair {names.get(self._start.chair_id, self._start.chair_id)} "
                    "or an admin",
                    user_ids=[self._start.chair_id],
                    what=f"decide '{item.title}' or close the session '{self._start.name}'",
                    otherwise="the item stays on the open session's agenda",
                )
            )
        return WaitingAnswer(workflow_id=wid, waiting=waiting)
