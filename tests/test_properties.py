"""Properties of the screening rules and of the budget ledger, over inputs hypothesis makes up:
screening is deterministic, blind to the order of budget lines and monotone in the gaps (a
stricter programme never finds less; each gap adds its own finding and takes none away); the
ledger never goes over the budget or below zero and balances under any sequence of
reservations, payments and releases, with retries (the same key again, later or at the same
moment) answering as the first call did and writing nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import ledger
from schemas.application import ApplicationContent
from schemas.common import OrganisationType
from schemas.council import Reservation
from schemas.programme import ProgrammeStart
from tests.conftest import fresh_database
from tests.test_ledger import APPS, BUDGET, _apply, _programme
from tests.test_screening import CLOSES, DURING, MEDICAL, OPENS, PROGRAMME, content
from workflows.intake import screen

pytestmark = pytest.mark.unit

# --- screening ------------------------------------------------------------------------------

CATEGORIES = ["direct_costs", "loan_interest", "other"]
lines = st.lists(
    st.fixed_dictionaries(
        {
            "item": st.sampled_from(["Model", "Integration", "Training", "Audit"]),
            "category": st.sampled_from(CATEGORIES),
            "year": st.integers(min_value=1, max_value=5),
            "amount_rub": st.integers(min_value=1, max_value=300_000_000),
        }
    ),
    min_size=1,
    max_size=6,
)
applications = st.builds(
    lambda budget, requested, investment, months, complex_, specialty: content(
        budget_lines=budget,
        requested_rub=requested if requested else sum(line["amount_rub"] for line in budget),
        total_investment_rub=investment,
        duration_months=months,
        complex_project=complex_,
        specialty=specialty,
    ),
    lines,
    st.one_of(st.just(0), st.integers(min_value=1, max_value=400_000_000)),
    st.integers(min_value=1, max_value=3_000_000_000),
    st.integers(min_value=1, max_value=60),
    st.booleans(),
    st.sampled_from(["cardiology", "radiology", "dermatology"]),
)
organisations = st.sampled_from(list(OrganisationType))
moments = st.sampled_from([OPENS - timedelta(seconds=1), OPENS, DURING, CLOSES])


def _rules(app: ApplicationContent, programme: ProgrammeStart, org: Any, at: datetime) -> set[str]:
    return {f.rule for f in screen(app, programme, org, at)}


@given(app=applications, org=organisations, at=moments, order=st.randoms(use_true_random=False))
def test_screening_is_deterministic_and_blind_to_the_order_of_budget_lines(
    app: ApplicationContent, org: OrganisationType, at: datetime, order: Any
) -> None:
    first = screen(app, PROGRAMME, org, at)
    assert screen(app, PROGRAMME, org, at) == first
    shuffled = list(app.budget_lines)
    order.shuffle(shuffled)
    assert screen(app.model_copy(update={"budget_lines": shuffled}), PROGRAMME, org, at) == first


def _stricter(programme: ProgrammeStart, draw: Any) -> ProgrammeStart:
    """The same programme with every limit tightened by a random amount (or left alone)."""
    spec = programme.spec
    specialties = [s for s in spec.specialties if draw(st.booleans())] or spec.specialties[:1]
    organisation_types = [o for o in spec.organisation_types if draw(st.booleans())]
    stricter = spec.model_copy(
        update={
            "max_grant_rub": draw(st.integers(min_value=1, max_value=spec.max_grant_rub)),
            "specialties": specialties,
            "organisation_types": organisation_types or spec.organisation_types,
            "intake_opens": spec.intake_opens + timedelta(days=draw(st.integers(0, 10))),
            "intake_closes": spec.intake_closes - timedelta(days=draw(st.integers(0, 10))),
            "complex_share_limit": draw(st.floats(0.01, spec.complex_share_limit)),
            "complex_annual_cap_rub": draw(st.integers(1, spec.complex_annual_cap_rub)),
        }
    )
    return programme.model_copy(update={"spec": stricter})


LAX = PROGRAMME.model_copy(
    update={
        "spec": PROGRAMME.spec.model_copy(
            update={"organisation_types": list(OrganisationType), "max_grant_rub": 400_000_000}
        )
    }
)


@given(app=applications, org=organisations, at=moments, data=st.data())
def test_a_stricter_programme_never_finds_fewer_gaps(
    app: ApplicationContent, org: OrganisationType, at: datetime, data: st.DataObject
) -> None:
    stricter = _stricter(LAX, data.draw)
    assert _rules(app, stricter, org, at) >= _rules(app, LAX, org, at)


# Gaps that can be opened one by one in an application that meets every rule, each breaking
# exactly one rule: (the rule, whether the applicant can fix it).
GAPS: dict[str, bool] = {
    "intake_window": False,
    "organisation_type": False,
    "specialty": False,
    "max_grant": True,
    "budget_lines": True,
    "budget_years": True,
}


def _with_gaps(gaps: set[str]) -> tuple[ApplicationContent, ProgrammeStart, Any, datetime]:
    fields: dict[str, Any] = {}
    if "specialty" in gaps:
        fields["specialty"] = "dermatology"
    if "budget_lines" in gaps:
        fields["requested_rub"] = 30_000_001  # the lines still add up to 30 000 000
    if "budget_years" in gaps:
        fields["duration_months"] = 12  # the second line falls in year 2
    programme = PROGRAMME
    if "max_grant" in gaps:
        spec = PROGRAMME.spec.model_copy(update={"max_grant_rub": 20_000_000})
        programme = PROGRAMME.model_copy(update={"spec": spec})
    org = OrganisationType.company if "organisation_type" in gaps else MEDICAL
    at = CLOSES if "intake_window" in gaps else DURING
    return content(**fields), programme, org, at


@given(gaps=st.sets(st.sampled_from(sorted(GAPS))), more=st.sampled_from(sorted(GAPS)))
def test_each_gap_adds_its_own_finding_and_takes_none_away(gaps: set[str], more: str) -> None:
    findings = screen(*_with_gaps(gaps))
    assert {f.rule for f in findings} == gaps
    assert all(f.fixable == GAPS[f.rule] for f in findings)
    assert {f.rule for f in screen(*_with_gaps(gaps | {more}))} == gaps | {more}


# --- the ledger -----------------------------------------------------------------------------

New = tuple[str, int, int, bool]  # (kind, application, amount, sent twice at once)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["approve", "pay", "release"]),
            st.integers(min_value=0, max_value=APPS - 1),
            st.integers(min_value=1, max_value=60),
            st.booleans(),
        ),
        st.integers(min_value=0, max_value=1000),  # retry the n-th earlier call (modulo)
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def database(postgres: EmbeddedPostgres) -> str:
    async def create() -> str:
        return await fresh_database(postgres.url, f"properties_{uuid.uuid4().hex[:8]}")

    return asyncio.run(create())


async def _once(url: str, kind: str, r: Reservation) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await _apply(conn, kind, r)
    finally:
        await conn.close()


def _answer(kind: str, result: Any) -> Any:
    """What a retry must repeat: the outcome, not the balance of the moment."""
    return result.ok if kind == "approve" else result


async def _play(url: str, plan: list[New | int]) -> None:
    conn = await asyncpg.connect(url)
    try:
        programme, apps = await _programme(conn)
        done: list[tuple[str, Reservation, Any]] = []
        committed, paid = [0] * APPS, [0] * APPS
        for n, step in enumerate(plan):
            before = await ledger.balance(conn, programme)
            if isinstance(step, int):
                if not done:
                    continue
                kind, r, first = done[step % len(done)]
                assert _answer(kind, await _apply(conn, kind, r)) == _answer(kind, first)
                assert await ledger.balance(conn, programme) == before, "a retry wrote"
                continue
            kind, i, amount, twice = step
            r = Reservation(
                key=f"{programme}:{n}",
                programme_id=str(programme),
                application_id=str(apps[i]),
                amount_rub=amount,
                reason=kind,
                at=datetime.now(UTC),
            )
            calls = [_once(url, kind, r) for _ in range(2 if twice else 1)]
            results = await asyncio.gather(*calls)
            assert len({repr(_answer(kind, x)) for x in results}) == 1, results
            # A refused approval writes nothing: asked again, it is decided afresh.
            if kind != "approve" or results[0].ok:
                done.append((kind, r, results[0]))
            unspent = committed[i] - paid[i]
            if kind == "approve" and results[0].ok:
                committed[i] += amount
            elif kind == "pay" and results[0]:
                paid[i] += amount
            elif kind == "release":
                assert results[0] == min(amount, unspent)
                committed[i] -= results[0]
            balance = await ledger.balance(conn, programme)
            assert balance is not None and balance.balanced, balance
            assert len(balance.entries) == len(done), "a duplicate key wrote twice"
            assert 0 <= balance.reserved_rub == sum(committed) <= BUDGET
            assert balance.disbursed_rub == sum(paid)
            assert balance.remaining_rub >= 0
            assert all(c - p >= 0 for c, p in zip(committed, paid, strict=True))
    finally:
        await conn.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
@pytest.mark.slow
def test_the_ledger_balances_under_any_sequence_with_retries_and_duplicates(
    database: str, plan: list[New | int]
) -> None:
    asyncio.run(_play(database, plan))
