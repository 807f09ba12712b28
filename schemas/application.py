"""Applications: what an applicant submits, how screening answers, what everyone sees."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from schemas.agreement import ProjectOutcome
from schemas.common import Actor, Input, OrganisationType, Output, Roubles, Stage
from schemas.programme import ProgrammeStart


class CostCategory(StrEnum):
    direct_costs = "direct_costs"
    loan_interest = "loan_interest"
    other = "other"


# --- what workflows hold: the application without the API's limits ---------------------------
# Histories keep these for years; the HTTP bodies below subclass them and add their limits, so a
# limit tightened on the API later never stops a recorded history from replaying.


class BudgetLineSpec(Output):
    item: str
    category: CostCategory
    year: int
    amount_rub: int


class ContentSpec(Output):
    """An application's content as workflows hold it (`ApplicationContent` without its
    limits)."""

    title: str
    summary: str
    specialty: str
    requested_rub: int
    total_investment_rub: int
    complex_project: bool = False
    duration_months: int
    budget_lines: Sequence[BudgetLineSpec]
    partner_institutions: list[str] = Field(default_factory=list)
    expected_results: str


# --- what applicants send --------------------------------------------------------------------


class BudgetLine(BudgetLineSpec, Input):
    item: str = Field(min_length=1, max_length=200)
    category: CostCategory
    year: int = Field(ge=1, le=10, description="Project year the cost falls in, from 1.")
    amount_rub: Roubles = Field(gt=0)


_EXAMPLE: dict[str, Any] = {
    "title": "AI triage of chest X-rays in polyclinics",
    "summary": "A decision-support service that flags urgent findings for the radiologist.",
    "specialty": "radiology",
    "requested_rub": 30_000_000,
    "total_investment_rub": 250_000_000,
    "complex_project": True,
    "duration_months": 24,
    "budget_lines": [
        {
            "item": "Model training and validation",
            "category": "direct_costs",
            "year": 1,
            "amount_rub": 18_000_000,
        },
        {
            "item": "Integration with the city's radiology archive",
            "category": "direct_costs",
            "year": 2,
            "amount_rub": 12_000_000,
        },
    ],
    "partner_institutions": ["sechenov-university"],
    "expected_results": "Time to report urgent findings down 30 % in 5 polyclinics.",
}


class ApplicationContent(ContentSpec, Input):
    """Everything an applicant writes; a revision replaces all of it."""

    title: str = Field(min_length=3, max_length=300)
    summary: str = Field(min_length=1, max_length=10_000)
    specialty: str = Field(min_length=2, max_length=80)
    requested_rub: Roubles = Field(gt=0)
    total_investment_rub: Roubles = Field(gt=0)
    complex_project: bool = Field(
        default=False,
        description=("A complex project: the 15 % of investment and 200 M a year rules apply."),
    )
    duration_months: int = Field(ge=1, le=120)
    budget_lines: list[BudgetLine] = Field(min_length=1, max_length=200)
    partner_institutions: list[Annotated[str, Field(min_length=1, max_length=120)]] = Field(
        default_factory=list, max_length=50
    )
    expected_results: str = Field(min_length=1, max_length=10_000)

    model_config = Input.model_config | {"json_schema_extra": {"examples": [_EXAMPLE]}}


class ApplicationCreate(ApplicationContent):
    """What an applicant sends to apply to a programme."""

    programme_id: str = Field(min_length=1, max_length=64)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"programme_id": "5b0c3f8e-6f39-4b8e-9d59-6a3d2b7c1e10", **_EXAMPLE}]
        }
    }


class Finding(Output):
    """One screening rule the application does not meet."""

    rule: str
    message: str
    fixable: bool


class ApplicationStart(Output):
    """The application workflow's input."""

    application_id: str
    applicant: Actor
    organisation_type: OrganisationType
    programme: ProgrammeStart
    content: ContentSpec
    submitted_at: datetime
    idempotency_key: str | None = None
    request_digest: str


class StageChange(Output):
    """Activity input: the application moved to `stage` (the `seq`-th change of its workflow)."""

    application_id: str
    workflow_id: str
    seq: int
    stage: Stage
    kind: str
    at: datetime
    actor: Actor | None = None
    reason: str | None = None
    findings: list[Finding] = Field(default_factory=list)
    action_required: str | None = None
    deadline: datetime | None = None
    content: ContentSpec | None = None
    review_score: float | None = None
    review_spread: float | None = None
    outcome: ProjectOutcome | None = None  # set when the project closes


class RevisionRequest(Output):
    """Update input: the applicant's revised application."""

    actor: Actor
    content: ContentSpec


class WithdrawalCreate(Input):
    """What an applicant (or an admin on its behalf) sends to withdraw."""

    reason: str = Field(min_length=1, max_length=2_000)

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"reason": "We found a partner with its own funding."}]}
    }


class WithdrawalRequest(Output):
    """Update input: a withdrawal by `actor`."""

    actor: Actor
    reason: str


class WaitingFor(Output):
    """Who must act next, what, by when, and what happens otherwise."""

    who: str
    what: str
    by: datetime | None = None
    otherwise: str | None = None


class ApplicationStatus(Output):
    """The workflow's own view of where the application is (a Query)."""

    application_id: str
    stage: Stage
    findings: list[Finding]
    waiting_for: WaitingFor | None


class ApplicationRecord(Output):
    """The workflow's own record of the application, to hold against its Postgres row (a
    Query: `grantflow check`). `seq` is the last change made, `recorded` the last one written:
    they differ only while a write is in flight."""

    application_id: str
    stage: Stage
    seq: int
    recorded: int
    requested_rub: int
    approved_rub: int | None
    outcome: ProjectOutcome | None


class ApplicationPublic(Output):
    """An application as its applicant (or an admin) sees it."""

    id: str
    programme_id: str
    applicant_id: str
    institution_id: str | None
    stage: Stage
    action_required: str | None
    deadline: datetime | None
    findings: list[Finding]
    content: ApplicationContent
    reviews_submitted: int = 0
    review_score: float | None = Field(
        default=None, description="The mean of the reviews' weighted scores, once reviewed."
    )
    review_spread: float | None = None
    submitted_at: datetime
    updated_at: datetime


class ApplicationPage(Output):
    items: list[ApplicationPublic]
    next_cursor: str | None


class TimelineEntry(Output):
    """One thing that happened to an application, for its applicant and admins."""

    at: datetime
    kind: str
    stage: Stage | None
    actor_role: str | None
    actor_name: str | None
    reason: str | None
    detail: dict[str, Any]
