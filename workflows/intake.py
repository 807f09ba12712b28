"""Screening: the eligibility and completeness rules of intake.

Pure functions of the application and the programme as created, so that the application
workflow runs them in-process (no activity, no history events) and replays give the same answer.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from schemas.application import ContentSpec, CostCategory, Finding
from schemas.common import OrganisationType
from schemas.programme import ProgrammeStart

COMPLEX_ELIGIBLE_COSTS = frozenset({CostCategory.direct_costs, CostCategory.loan_interest})


def _rub(amount: int) -> str:
    return f"{amount:,}".replace(",", " ") + " RUB"


def screen(
    content: ContentSpec,
    programme: ProgrammeStart,
    organisation_type: OrganisationType,
    submitted_at: datetime,
) -> list[Finding]:
    """Every rule the application breaks. Unfixable findings make it ineligible; fixable ones
    send it back to the applicant. An empty list means eligible."""
    return [
        *_eligibility(content, programme, organisation_type, submitted_at),
        *_completeness(content, programme),
    ]


def _eligibility(
    content: ContentSpec,
    programme: ProgrammeStart,
    organisation_type: OrganisationType,
    submitted_at: datetime,
) -> list[Finding]:
    spec = programme.spec
    found: list[Finding] = []
    if not spec.intake_opens <= submitted_at < spec.intake_closes:
        found.append(
            Finding(
                rule="intake_window",
                fixable=False,
                message=(
                    f"submitted at {submitted_at.isoformat()}, outside the intake window "
                    f"{spec.intake_opens.isoformat()} to {spec.intake_closes.isoformat()}"
                ),
            )
        )
    if organisation_type not in spec.organisation_types:
        admitted = ", ".join(sorted(spec.organisation_types))
        found.append(
            Finding(
                rule="organisation_type",
                fixable=False,
                message=(
                    f"organisation type {organisation_type} is not admitted (admitted: {admitted})"
                ),
            )
        )
    if content.specialty not in spec.specialties:
        found.append(
            Finding(
                rule="specialty",
                fixable=False,
                message=(
                    f"specialty {content.specialty!r} is not offered (offered: "
                    f"{', '.join(spec.specialties)})"
                ),
            )
        )
    return found


def _completeness(content: ContentSpec, programme: ProgrammeStart) -> list[Finding]:
    spec = programme.spec
    found: list[Finding] = []
    if content.requested_rub > spec.max_grant_rub:
        found.append(
            Finding(
                rule="max_grant",
                fixable=True,
                message=(
                    f"requested {_rub(content.requested_rub)} exceeds the maximum grant "
                    f"{_rub(spec.max_grant_rub)}"
                ),
            )
        )
    if content.requested_rub > content.total_investment_rub:
        found.append(
            Finding(
                rule="investment",
                fixable=True,
                message=(
                    f"requested {_rub(content.requested_rub)} exceeds the total investment "
                    f"{_rub(content.total_investment_rub)}"
                ),
            )
        )
    lines_total = sum(line.amount_rub for line in content.budget_lines)
    if lines_total != content.requested_rub:
        found.append(
            Finding(
                rule="budget_lines",
                fixable=True,
                message=(
                    f"budget lines add up to {_rub(lines_total)}, not the requested "
                    f"{_rub(content.requested_rub)}"
                ),
            )
        )
    years = -(-content.duration_months // 12)
    late = sorted({line.year for line in content.budget_lines if line.year > years})
    if late:
        found.append(
            Finding(
                rule="budget_years",
                fixable=True,
                message=(
                    f"budget lines in year(s) {late} fall after the project's {years} year(s)"
                ),
            )
        )
    if content.complex_project:
        found.extend(_complex_rules(content, programme))
    return found


def _complex_rules(content: ContentSpec, programme: ProgrammeStart) -> list[Finding]:
    spec = programme.spec
    found: list[Finding] = []
    # Decimal, not float: 15 % of an investment must not round a rouble the wrong way.
    share_cap = int(Decimal(str(spec.complex_share_limit)) * content.total_investment_rub)
    if content.requested_rub > share_cap:
        found.append(
            Finding(
                rule="complex_share",
                fixable=True,
                message=(
                    f"a complex project's grant is at most {spec.complex_share_limit:.0%} of its "
                    f"investment: {_rub(share_cap)}, not {_rub(content.requested_rub)}"
                ),
            )
        )
    by_year: dict[int, int] = defaultdict(int)
    for line in content.budget_lines:
        by_year[line.year] += line.amount_rub
    for year, amount in sorted(by_year.items()):
        if amount > spec.complex_annual_cap_rub:
            found.append(
                Finding(
                    rule="complex_annual_cap",
                    fixable=True,
                    message=(
                        f"year {year} asks {_rub(amount)}, over the annual cap "
                        f"{_rub(spec.complex_annual_cap_rub)}"
                    ),
                )
            )
    ineligible = sorted({line.category for line in content.budget_lines} - COMPLEX_ELIGIBLE_COSTS)
    if ineligible:
        found.append(
            Finding(
                rule="complex_costs",
                fixable=True,
                message=(
                    f"a complex project may fund only direct costs and loan interest, not "
                    f"{', '.join(ineligible)}"
                ),
            )
        )
    return found
