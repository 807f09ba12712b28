"""How a review's scores become the application's score, and which reviews are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.programme import DEFAULT_RUBRIC, Criterion
from schemas.review import Recommendation, ReviewCreate
from workflows.review import aggregate, review_problems, weighted_score

pytestmark = pytest.mark.unit


def test_a_review_score_weights_each_criterion_by_the_rubric() -> None:
    scores = {"clinical_value": 10, "novelty": 5, "feasibility": 0}
    assert weighted_score(scores, DEFAULT_RUBRIC) == pytest.approx(0.4 * 10 + 0.3 * 5)
    uneven = [Criterion(name="a", weight=3), Criterion(name="b", weight=1)]
    assert weighted_score({"a": 8, "b": 4}, uneven) == 7.0


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=7))
def test_the_application_score_is_the_mean_and_the_spread_the_range(scores: list[float]) -> None:
    mean, spread = aggregate(scores)
    assert min(scores) - 1e-3 <= mean <= max(scores) + 1e-3
    assert spread == pytest.approx(max(scores) - min(scores), abs=1e-3)


def review(scores: dict[str, int]) -> ReviewCreate:
    return ReviewCreate(scores=scores, recommendation=Recommendation.fund, comments="ok")


def test_a_complete_review_within_range_has_no_problems() -> None:
    assert (
        review_problems(
            review({"clinical_value": 1, "novelty": 10, "feasibility": 5}), DEFAULT_RUBRIC, 1, 10
        )
        == ""
    )


def test_every_problem_of_a_review_is_named_at_once() -> None:
    problems = review_problems(
        review({"clinical_value": 0, "novelty": 11, "price": 4}), DEFAULT_RUBRIC, 1, 10
    )
    assert problems == (
        "missing scores for feasibility; unknown criteria price (the rubric: clinical_value, "
        "novelty, feasibility); scores must be integers from 1 to 10: clinical_value=0, novelty=11"
    )
