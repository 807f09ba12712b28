"""How a council item's votes become its decision: quorum, majority, the amount approved."""

from __future__ import annotations

import pytest

from schemas.common import Actor, Role
from schemas.council import Choice, Outcome, VoteRequest
from workflows.council import outcome_of

pytestmark = pytest.mark.unit

REQUESTED = 30_000_000


def votes(*cast: tuple[Choice, int | None]) -> list[VoteRequest]:
    return [
        VoteRequest(
            actor=Actor(user_id=f"m{i}", role=Role.council, name=f"Member {i}"),
            application_id="app",
            choice=choice,
            amount_rub=amount,
            reason=f"{choice.value} by {i}",
        )
        for i, (choice, amount) in enumerate(cast)
    ]


A, R, D = Choice.approve, Choice.reject, Choice.defer


@pytest.mark.parametrize(
    ("cast", "quorum", "expected"),
    [
        ([(A, None), (A, None)], 3, (Outcome.deferred, None, "quorum not met: 2 of 3 votes")),
        (
            [(A, 25_000_000), (A, 20_000_000), (R, None)],
            3,
            (Outcome.approved, 20_000_000, "approved 2 of 3 for 20 000 000 RUB"),
        ),
        (
            [(A, None), (A, None), (D, None)],
            2,
            (Outcome.approved, REQUESTED, "approved 2 of 3 for 30 000 000 RUB"),
        ),
        (
            [(R, None), (R, None), (A, None)],
            3,
            (Outcome.rejected, None, "rejected 2 of 3: reject by 0; reject by 1"),
        ),
        (
            [(D, None), (D, None), (R, None)],
            3,
            (Outcome.deferred, None, "deferred 2 of 3: defer by 0; defer by 1"),
        ),
        ([(A, None), (R, None), (D, None)], 3, (Outcome.deferred, None, "no majority: 1/1/1")),
        ([(A, None), (R, None)], 2, (Outcome.deferred, None, "no majority: 1/1/0")),
    ],
)
def test_the_majority_of_votes_cast_decides_once_the_quorum_has_voted(
    cast: list[tuple[Choice, int | None]],
    quorum: int,
    expected: tuple[Outcome, int | None, str],
) -> None:
    outcome, amount, reason = outcome_of(votes(*cast), quorum, REQUESTED)
    assert (outcome, amount, reason) == expected
    # Who voted is never in the reason the applicant reads.
    assert "Member" not in reason
