"""The council: sessions, agendas, votes and decisions, and the programme's budget ledger."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from schemas.common import Actor, Input, Output, Roubles


class Choice(StrEnum):
    approve = "approve"
    reject = "reject"
    defer = "defer"


class Outcome(StrEnum):
    approved = "approved"
    rejected = "rejected"
    deferred = "deferred"


class SessionCreate(Input):
    """An admin opens a council session for a programme. Its agenda is every application of
    the programme that is `reviewed` or `deferred`, best score first."""

    name: str = Field(min_length=1, max_length=200)
    member_ids: list[str] | None = Field(
        default=None, description="Council members who vote; every council member by default."
    )
    chair_id: str | None = Field(
        default=None, description="Who closes the session: a member or an admin (you, default)."
    )

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"name": "Council of Chief Physicians, March"}]}
    }


class VoteSpec(Output):
    """A vote as the council session workflow holds it (`VoteCreate` without its limits)."""

    application_id: str
    choice: Choice
    amount_rub: int | None = None
    reason: str


class VoteCreate(VoteSpec, Input):
    """A council member's vote on one agenda item. `amount_rub` reduces an approval."""

    application_id: str
    choice: Choice
    amount_rub: Roubles | None = Field(default=None, gt=0)
    reason: str = Field(min_length=1, max_length=2_000)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "application_id": "9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
                    "choice": "approve",
                    "amount_rub": 25_000_000,
                    "reason": "Strong reviews; the integration budget is generous.",
                }
            ]
        }
    }


class VoteRequest(VoteSpec):
    """Update input: a vote and who casts it."""

    actor: Actor


class CloseRequest(Output):
    actor: Actor


class DecideRequest(Output):
    """Update input: the chair decides one item now, before the session closes."""

    actor: Actor
    application_id: str


class ReviewSummary(Output):
    """One review as the council sees it: no reviewer identity."""

    score: float
    recommendation: str
    comments: str


class AgendaItem(Output):
    rank: int
    application_id: str
    title: str
    institution_id: str | None
    requested_rub: int
    score: float | None
    spread: float | None
    reviews: list[ReviewSummary]


class SessionStart(Output):
    session_id: str
    programme_id: str
    name: str
    members: list[Actor]
    chair_id: str
    quorum: int
    opened_by: Actor
    opened_at: datetime


class Tally(Output):
    approve: int = 0
    reject: int = 0
    defer: int = 0


class Decision(Output):
    """The council's decision on one item, sent to the application's workflow."""

    session_id: str
    application_id: str
    outcome: Outcome
    amount_rub: int | None
    reason: str
    tally: Tally
    decided_at: datetime


class SessionState(Output):
    """The session as the workflow holds it (a Query): agenda, votes so far, decisions."""

    session_id: str
    programme_id: str
    name: str
    open: bool
    chair_id: str
    quorum: int
    members: list[str]
    agenda: list[AgendaItem]
    tallies: dict[str, Tally]
    decisions: list[Decision]


class Reservation(Output):
    """Activity input: reserve (or release, or disburse) an amount of the programme's budget."""

    key: str
    programme_id: str
    application_id: str
    amount_rub: int
    reason: str
    at: datetime


class Reserved(Output):
    ok: bool
    remaining_rub: int


class VoteRecord(Output):
    session_id: str
    vote: VoteRequest
    at: datetime


class LedgerEntry(Output):
    id: int
    application_id: str
    kind: str
    amount_rub: int
    reason: str
    at: datetime


class LedgerBalance(Output):
    """The ledger summed from its entries, and whether it holds together."""

    programme_id: str
    budget_rub: int
    reserved_rub: int  # reservations minus releases: committed to approved projects
    disbursed_rub: int
    remaining_rub: int
    balanced: bool
    problems: list[str]
    entries: list[LedgerEntry]


class SessionSummary(Output):
    """A council session as a programme's list shows it."""

    session_id: str
    programme_id: str
    name: str
    open: bool
    quorum: int
    members: int
    opened_at: datetime
    closed_at: datetime | None


class SessionPublic(Output):
    id: str
    programme_id: str
    name: str
    open: bool
    chair_id: str
    quorum: int
    agenda: list[AgendaItem]
    tallies: dict[str, Tally]
    decisions: list[Decision]


class SessionListItem(Output):
    """A council session as its member's list shows it: how far the agenda has come and how
    much of it the member has voted on."""

    session_id: str
    programme_id: str
    programme_name: str
    name: str
    open: bool
    opened_at: datetime
    items: int
    decided: int
    my_votes: int


class SessionBudget(Output):
    """The budget of a session's programme as the council decides under it: the whole budget,
    what approvals hold (reservations less releases) and what is left."""

    programme_id: str
    programme_name: str
    budget_rub: int
    reserved_rub: int
    remaining_rub: int
