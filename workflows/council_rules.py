"""The council's rules and texts: how the votes on an item become its decision (quorum,
majority, the amount approved) and what a refused approval says. Pure functions of their
arguments, so the council session workflow runs them in-process and replays get the same
answers; tests call them directly."""

from __future__ import annotations

from collections import Counter

from schemas.council import Choice, Outcome, Tally, VoteRequest


def rub(amount: int) -> str:
    return f"{amount:,}".replace(",", " ") + " RUB"


def tally(votes: list[VoteRequest]) -> Tally:
    counts = Counter(v.choice for v in votes)
    return Tally(
        approve=counts[Choice.approve], reject=counts[Choice.reject], defer=counts[Choice.defer]
    )


def outcome_of(
    votes: list[VoteRequest], quorum: int, requested: int
) -> tuple[Outcome, int | None, str]:
    """The decision the votes make: without the quorum, or without a majority of the votes
    cast, the item is deferred. An approval is for the smallest amount the approving members
    named (the requested amount when they named none)."""
    t = tally(votes)
    cast = len(votes)
    if cast < quorum:
        return Outcome.deferred, None, f"quorum not met: {cast} of {quorum} votes"
    if t.approve * 2 > cast:
        amount = min(v.amount_rub or requested for v in votes if v.choice == Choice.approve)
        return Outcome.approved, amount, f"approved {t.approve} of {cast} for {rub(amount)}"
    # The applicant reads these reasons: a rejection or deferral says why, not who.
    for outcome, choice, count in (
        (Outcome.rejected, Choice.reject, t.reject),
        (Outcome.deferred, Choice.defer, t.defer),
    ):
        if count * 2 > cast:
            reasons = "; ".join(v.reason for v in votes if v.choice == choice)
            return outcome, None, f"{outcome.value} {count} of {cast}: {reasons}"
    return Outcome.deferred, None, f"no majority: {t.approve}/{t.reject}/{t.defer}"


def overspend(remaining: int, amount: int) -> str:
    """Why an approval the budget cannot cover is refused."""
    return f"the programme has {rub(remaining)} left; approving {rub(amount)} would overspend it"
