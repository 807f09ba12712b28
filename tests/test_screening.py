"""The screening rules on their own, at their boundaries: what an applicant is told and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.application import ApplicationContent
from schemas.common import OrganisationType
from schemas.programme import ProgrammeCreate, ProgrammeStart
from workflows.intake import screen

pytestmark = pytest.mark.unit

OPENS = datetime(2026, 1, 15, tzinfo=UTC)
CLOSES = datetime(2026, 3, 1, tzinfo=UTC)
DURING = OPENS + timedelta(days=1)
MEDICAL = OrganisationType.medical_institution

PROGRAMME = ProgrammeStart(
    programme_id="p-1",
    created_by="admin",
    spec=ProgrammeCreate(
        name="Medical innovation grants",
        budget_rub=2_540_000_000,
        max_grant_rub=200_000_000,
        organisation_types=[MEDICAL],
        specialties=["cardiology", "radiology"],
        intake_opens=OPENS,
        intake_closes=CLOSES,
    ),
)


def content(**overrides: Any) -> ApplicationContent:
    fields: dict[str, Any] = {
        "title": "AI triage",
        "summary": "Flags urgent findings.",
        "specialty": "radiology",
        "requested_rub": 30_000_000,
        "total_investment_rub": 250_000_000,
        "duration_months": 24,
        "budget_lines": [
            {"item": "Model", "category": "direct_costs", "year": 1, "amount_rub": 18_000_000},
            {
                "item": "Integration",
                "category": "direct_costs",
                "year": 2,
                "amount_rub": 12_000_000,
            },
        ],
        "expected_results": "Faster reports.",
    }
    fields.update(overrides)
    return ApplicationContent.model_validate(fields)


def rules(
    app: ApplicationContent, at: datetime = DURING, org: OrganisationType = MEDICAL
) -> list[str]:
    return [f.rule for f in screen(app, PROGRAMME, org, at)]


def one_line(amount: int, category: str = "direct_costs", year: int = 1) -> list[dict[str, Any]]:
    return [{"item": "All of it", "category": category, "year": year, "amount_rub": amount}]


def test_an_application_that_meets_every_rule_has_no_findings() -> None:
    assert screen(content(), PROGRAMME, MEDICAL, DURING) == []


def test_the_intake_window_includes_its_opening_and_excludes_its_close() -> None:
    assert rules(content(), at=OPENS) == []
    assert rules(content(), at=OPENS - timedelta(microseconds=1)) == ["intake_window"]
    assert rules(content(), at=CLOSES - timedelta(microseconds=1)) == []
    assert rules(content(), at=CLOSES) == ["intake_window"]


def test_eligibility_findings_cannot_be_fixed_and_say_what_is_admitted() -> None:
    findings = screen(content(specialty="dermatology"), PROGRAMME, OrganisationType.company, CLOSES)
    assert [(f.rule, f.fixable) for f in findings] == [
        ("intake_window", False),
        ("organisation_type", False),
        ("specialty", False),
    ]
    assert "admitted: medical_institution" in findings[1].message
    assert "'dermatology'" in findings[2].message and "cardiology, radiology" in findings[2].message


def test_the_maximum_grant_is_allowed_and_a_rouble_more_is_not() -> None:
    at_max = content(requested_rub=200_000_000, budget_lines=one_line(200_000_000))
    assert rules(at_max) == []
    over = content(requested_rub=200_000_001, budget_lines=one_line(200_000_001))
    findings = screen(over, PROGRAMME, MEDICAL, DURING)
    assert [(f.rule, f.fixable) for f in findings] == [("max_grant", True)]
    assert findings[0].message == (
        "requested 200 000 001 RUB exceeds the maximum grant 200 000 000 RUB"
    )


def test_the_grant_cannot_exceed_the_total_investment() -> None:
    app = content(requested_rub=30_000_000, total_investment_rub=29_999_999)
    assert rules(app) == ["investment"]


def test_budget_lines_after_the_projects_last_year_are_refused() -> None:
    # 13 months is a project of two years: year 2 is fine, year 3 is not.
    assert rules(content(duration_months=13)) == []
    assert rules(content(duration_months=12)) == ["budget_years"]


@given(
    amounts=st.lists(st.integers(min_value=1, max_value=50_000_000), min_size=1, max_size=8),
    requested=st.integers(min_value=1, max_value=200_000_000),
)
def test_budget_lines_must_add_up_to_the_request_exactly(
    amounts: list[int], requested: int
) -> None:
    lines = [
        {"item": f"Line {i}", "category": "direct_costs", "year": 1, "amount_rub": a}
        for i, a in enumerate(amounts)
    ]
    app = content(requested_rub=requested, total_investment_rub=10**12, budget_lines=lines)
    assert ("budget_lines" in rules(app)) == (sum(amounts) != requested)


def test_a_complex_grant_is_at_most_15_percent_of_the_investment_to_the_rouble() -> None:
    exactly = content(
        complex_project=True,
        total_investment_rub=200_000_000,
        requested_rub=30_000_000,
        budget_lines=one_line(30_000_000),
    )
    assert rules(exactly) == []
    over = content(
        complex_project=True,
        total_investment_rub=200_000_000,
        requested_rub=30_000_001,
        budget_lines=one_line(30_000_001),
    )
    findings = screen(over, PROGRAMME, MEDICAL, DURING)
    assert [f.rule for f in findings] == ["complex_share"]
    assert "at most 15% of its investment: 30 000 000 RUB" in findings[0].message


def test_a_complex_grant_is_at_most_200_million_in_any_year() -> None:
    def two_years(first: int, second: int) -> ApplicationContent:
        return content(
            complex_project=True,
            total_investment_rub=10**10,
            requested_rub=first + second,
            budget_lines=[*one_line(first, year=1), *one_line(second, year=2)],
        )

    big = PROGRAMME.model_copy(
        update={"spec": PROGRAMME.spec.model_copy(update={"max_grant_rub": 1_000_000_000})}
    )
    at_cap = two_years(200_000_000, 200_000_000)
    assert screen(at_cap, big, MEDICAL, DURING) == []
    over = two_years(200_000_000, 200_000_001)
    findings = screen(over, big, MEDICAL, DURING)
    assert [f.rule for f in findings] == ["complex_annual_cap"]
    assert findings[0].message.startswith("year 2 asks 200 000 001 RUB")


def test_a_complex_project_funds_only_direct_costs_and_loan_interest() -> None:
    lines = [
        *one_line(20_000_000, category="loan_interest"),
        *one_line(10_000_000, category="other"),
    ]
    app = content(complex_project=True, budget_lines=lines)
    findings = screen(app, PROGRAMME, MEDICAL, DURING)
    assert [f.rule for f in findings] == ["complex_costs"]
    assert findings[0].message.endswith("not other")
    # The same lines in an ordinary project are fine: the rule is for complex projects only.
    assert rules(content(budget_lines=lines)) == []


def test_every_finding_is_reported_at_once() -> None:
    app = content(
        complex_project=True,
        requested_rub=250_000_000,
        total_investment_rub=240_000_000,
        budget_lines=one_line(250_000_000, category="other", year=3),
    )
    assert rules(app) == [
        "max_grant",
        "investment",
        "budget_years",
        "complex_share",
        "complex_annual_cap",
        "complex_costs",
    ]
