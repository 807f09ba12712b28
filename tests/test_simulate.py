"""A small competition played end to end through the API on the session's servers: every
application ends in a final stage, workflows and rows agree, and the funnel is the one the
seed intends, whatever the timing."""

from __future__ import annotations

import pytest

from grantflow.simulation.http import Api
from grantflow.simulation.plan import Fate, council_decision, expected_final_stages, plan
from grantflow.simulation.run import Options, simulate
from tests.conftest import SESSION, Stack

pytestmark = pytest.mark.system

# Seed 45: every path (ineligible, withdrawn, expired, revised, deferred, approved, rejected).
# Shorter review windows than the command's: a test has fewer people waiting on the servers.
SMALL = Options(
    applications=20,
    institutions=8,
    reviewers=30,
    clinics=6,
    council_members=5,
    seed=45,
    poll=0.5,
    params={"review_acceptance_window": 6, "review_deadline": 12, "reminder_lead_time": 2},
)


def test_choices_depend_only_on_the_seed() -> None:
    first = plan(7, 20, 8, 6)
    assert first == plan(7, 20, 8, 6)
    assert first != plan(8, 20, 8, 6)
    # One application's behaviour does not depend on how many others there are.
    assert plan(7, 40, 8, 6)[:10] == first[:10]


def test_the_default_plan_has_the_operators_shape() -> None:
    plans = plan(1, 186, 46, 30)
    apps = [p for p in plans if p.fate != Fate.late]
    assert len(apps) == 186 and len({p.applicant for p in apps}) == 46
    approved = [
        p for p in apps if p.fate == Fate.council and council_decision(1, p, 5) == "approve"
    ]
    assert 0.38 <= len(approved) / 186 <= 0.48  # the operator: 80 of 186, 43 %
    implemented = [p for p in approved if p.outcome == "implemented"]
    assert 0.2 <= len(implemented) / len(approved) <= 0.4  # the operator: about 30 %
    assert len({c for p in approved for c in p.clinics}) <= 30


@SESSION
@pytest.mark.timeout(300)  # about a minute; more on a machine shared with other work
@pytest.mark.slow
async def test_a_small_competition_ends_final_consistent_and_as_the_seed_intends(
    stack: Stack,
) -> None:
    figures = await simulate(stack.pool, stack.client, Api(stack.api), SMALL)
    assert not figures["timed_out"] and figures["all_final"], figures["final_stages"]
    assert figures["consistent"], figures["disagreements"]
    assert figures["applications"] == 20
    plans = plan(SMALL.seed, SMALL.applications, SMALL.institutions, SMALL.clinics)
    assert figures["final_stages"] == expected_final_stages(SMALL.seed, plans, 5)
    assert figures["late_refused"] == sum(1 for p in plans if p.fate == Fate.late)
    assert figures["approved"] == figures["final_stages"].get("closed", 0)
    assert figures["budget"]["approved"] > 0
    assert figures["budget"]["disbursed"] > 0
    assert figures["implemented"] == sum(
        1
        for p in plans
        if p.fate == Fate.council
        and council_decision(SMALL.seed, p, 5) == "approve"
        and p.outcome == "implemented"
    )
    assert figures["events_per_application"] > 0 and figures["http_p99_ms"] > 0
