"""Programmes: a call for applications with its budget, rules and durations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator, Field, WithJsonSchema, model_validator

from schemas.common import Actor, Input, OrganisationType, Output, Reason, Roubles


def _not_a_boolean(value: object) -> object:
    # pydantic would read `false` as 0 seconds and `true` as 1 (found by schemathesis).
    if isinstance(value, bool):
        raise ValueError("a duration is ISO 8601 (P14D) or seconds, not true or false")
    return value


def _duration_schema(minimum: str) -> WithJsonSchema:
    """What a duration accepts, as its JSON schema: pydantic's own says only strings."""
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "duration"},
                {"type": "number", minimum: 0},
            ],
            "description": "ISO 8601 (P14D) or seconds.",
        }
    )


Duration = Annotated[
    timedelta,
    BeforeValidator(_not_a_boolean),
    Field(gt=timedelta(0), description="ISO 8601 (P14D) or seconds."),
    _duration_schema("exclusiveMinimum"),
]


# --- what workflows hold: the programme without the API's limits -----------------------------
# Histories keep these for years; an HTTP body below subclasses each and adds its limits, so a
# limit tightened on the API later never stops a recorded history from replaying.


class CriterionSpec(Output):
    """One line of the programme's rubric, as workflows hold it."""

    name: str
    weight: float
    description: str = ""


class ParamsSpec(Output):
    """The programme's durations and counts, as workflows hold them (`ProgrammeParams`
    without its limits, with the same defaults)."""

    revision_window: timedelta = timedelta(days=14)
    review_acceptance_window: timedelta = timedelta(days=3)
    review_deadline: timedelta = timedelta(days=21)
    reminder_lead_time: timedelta = timedelta(days=2)
    reviews_required: int = 3
    rubric: Sequence[CriterionSpec] = Field(default_factory=lambda: list(DEFAULT_RUBRIC))
    score_min: int = 1
    score_max: int = 10
    spread_threshold: float = 3.0
    council_quorum: int = 3
    agreement_window: timedelta = timedelta(days=14)
    tranche_interval: timedelta = timedelta(days=365)
    report_interval: timedelta = timedelta(days=91)
    financial_report_interval: timedelta | None = timedelta(days=365)
    pilot_report_window: timedelta = timedelta(days=14)
    continue_as_new_after: int = 1_000


class ProgrammeSpec(Output):
    """A programme as workflows hold it (`ProgrammeCreate` without its limits)."""

    name: str
    budget_rub: int
    max_grant_rub: int
    organisation_types: list[OrganisationType]
    specialties: list[str]
    intake_opens: datetime
    intake_closes: datetime
    complex_share_limit: float = 0.15
    complex_annual_cap_rub: int = 200_000_000
    params: ParamsSpec = Field(default_factory=ParamsSpec)


class ChangesSpec(Output):
    """A correction's changes as the programme workflow holds them (`ProgrammeChanges`
    without its limits)."""

    max_grant_rub: int | None = None
    organisation_types: list[OrganisationType] | None = None
    specialties: list[str] | None = None
    complex_share_limit: float | None = None
    complex_annual_cap_rub: int | None = None


# --- what admins send ------------------------------------------------------------------------


class Criterion(CriterionSpec, Input):
    """One line of the programme's rubric."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")
    weight: float = Field(gt=0, le=100)
    description: str = ""


DEFAULT_RUBRIC: list[Criterion] = [
    Criterion(name="clinical_value", weight=0.4, description="Benefit to patients and doctors."),
    Criterion(name="novelty", weight=0.3, description="What is new against current practice."),
    Criterion(name="feasibility", weight=0.3, description="Team, plan and budget can deliver it."),
]


# Each report due is state the agreement's workflow carries and a row it writes: a 1-second
# cadence over a year-long tranche would be thousands of both. Checked when a programme is
# created, not in the model: programmes already running keep replaying their inputs.
MAX_REPORTS_PER_YEAR = 52


class ProgrammeParams(ParamsSpec, Input):
    """Every duration and count the lifecycle needs. Production uses days; the simulator and
    the tests use seconds. Nothing in the code assumes a scale."""

    revision_window: Duration = timedelta(days=14)
    review_acceptance_window: Duration = timedelta(days=3)
    review_deadline: Duration = timedelta(days=21)
    reminder_lead_time: Duration = timedelta(days=2)
    reviews_required: int = Field(default=3, ge=1, le=10)
    rubric: list[Criterion] = Field(default_factory=lambda: list(DEFAULT_RUBRIC), min_length=1)
    score_min: int = Field(default=1, ge=0)
    score_max: int = Field(default=10, le=100)
    spread_threshold: float = Field(
        default=3.0,
        gt=0,
        description="When the reviews' scores differ by more than this, one more expert "
        "reviews the application (once).",
    )

    council_quorum: int = Field(
        default=3, ge=1, le=50, description="Votes needed on an item before it is decided."
    )
    agreement_window: Duration = Field(
        default=timedelta(days=14),
        description="Time the applicant has to accept an agreement before the approval lapses.",
    )
    tranche_interval: Duration = Field(
        default=timedelta(days=365),
        description="Time between tranches: one per project year, the first on acceptance; "
        "each later one also waits for the report due before it to be accepted.",
    )

    report_interval: Duration = Field(
        default=timedelta(days=91),
        description="Time between a project's progress reports, from the agreement's "
        "acceptance to the project's end (one `tranche_interval` per project year); the last "
        "report is the final report.",
    )
    financial_report_interval: (
        Annotated[
            timedelta,
            BeforeValidator(_not_a_boolean),
            Field(ge=timedelta(0), description="ISO 8601 (P365D) or seconds."),
            _duration_schema("minimum"),
        ]
        | None
    ) = Field(
        default=timedelta(days=365),
        description="Time between a project's financial reports, from the agreement's "
        "acceptance to the project's end; 0 or null: no financial reports.",
    )
    pilot_report_window: Duration = Field(
        default=timedelta(days=14),
        description="Time a pilot site has, after its period ends, to report its metrics; "
        "then it escalates to the admins.",
    )
    continue_as_new_after: int = Field(
        default=1_000,
        ge=5,
        description="Changes a long-lived workflow (the agreement's reporting) records before "
        "it continues as new; it also does so whenever Temporal suggests it.",
    )

    def reports_per_year(self) -> float:
        """Reports a project owes per project year (one `tranche_interval`), final aside."""
        per_year = self.tranche_interval / self.report_interval
        if self.financial_report_interval:
            per_year += self.tranche_interval / self.financial_report_interval
        return per_year

    @model_validator(mode="after")
    def _consistent(self) -> ProgrammeParams:
        if self.score_min >= self.score_max:
            raise ValueError("score_min must be below score_max")
        names = [c.name for c in self.rubric]
        if len(set(names)) != len(names):
            raise ValueError("rubric criteria must have distinct names")
        if self.reminder_lead_time >= self.review_deadline:
            raise ValueError("reminder_lead_time must be shorter than review_deadline")
        return self


class ProgrammeCreate(ProgrammeSpec, Input):
    """What an admin sends to open a call for applications."""

    name: str = Field(min_length=3, max_length=200)
    budget_rub: Roubles = Field(gt=0)
    max_grant_rub: Roubles = Field(gt=0)
    organisation_types: list[OrganisationType] = Field(min_length=1)
    specialties: list[Annotated[str, Field(min_length=2, max_length=80)]] = Field(min_length=1)
    intake_opens: AwareDatetime
    intake_closes: AwareDatetime
    complex_share_limit: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description=("A complex project's grant is at most this share of its total investment."),
    )
    complex_annual_cap_rub: Roubles = Field(
        default=200_000_000,
        gt=0,
        description=("A complex project's grant is at most this much in any one year."),
    )
    params: ProgrammeParams = ProgrammeParams()

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Moscow medical innovation grants 2026",
                    "budget_rub": 2_540_000_000,
                    "max_grant_rub": 200_000_000,
                    "organisation_types": ["medical_institution", "company"],
                    "specialties": ["cardiology", "oncology", "radiology"],
                    "intake_opens": "2026-01-15T00:00:00Z",
                    "intake_closes": "2026-03-01T00:00:00Z",
                    "params": {"revision_window": "P14D", "reviews_required": 3},
                }
            ]
        }
    }

    @model_validator(mode="after")
    def _consistent(self) -> ProgrammeCreate:
        if self.intake_closes <= self.intake_opens:
            raise ValueError("intake_closes must be after intake_opens")
        if self.max_grant_rub > self.budget_rub:
            raise ValueError("max_grant_rub cannot exceed budget_rub")
        if len(set(self.specialties)) != len(self.specialties):
            raise ValueError("specialties must not repeat")
        return self


class IntakeState(StrEnum):
    scheduled = "scheduled"
    open = "open"
    closed = "closed"


class ProgrammeStart(Output):
    """The programme workflow's input: the programme as created, with its id."""

    programme_id: str
    created_by: str
    spec: ProgrammeSpec


class IntakeChange(Output):
    """Activity input: the programme workflow moved its intake to `state` at `at`."""

    programme_id: str
    state: IntakeState
    at: datetime


class ProgrammePublic(Output):
    """A programme as anyone signed in sees it."""

    id: str
    name: str
    budget_rub: int
    max_grant_rub: int
    organisation_types: list[OrganisationType]
    specialties: list[str]
    intake_opens: datetime
    intake_closes: datetime
    intake_state: IntakeState
    complex_share_limit: float
    complex_annual_cap_rub: int
    params: ProgrammeParams
    created_at: datetime


# --- corrections: an admin fixes a screening rule entered wrong ------------------------------


class ProgrammeChanges(ChangesSpec, Input):
    """The screening rules to correct; a field left out keeps its value. Only fields screening
    reads: the intake window is not among them (the programme workflow's timers open and close
    intake, and a late application stays late)."""

    max_grant_rub: Roubles | None = Field(default=None, gt=0)
    organisation_types: list[OrganisationType] | None = Field(default=None, min_length=1)
    specialties: list[Annotated[str, Field(min_length=2, max_length=80)]] | None = Field(
        default=None, min_length=1
    )
    complex_share_limit: float | None = Field(default=None, gt=0, le=1)
    complex_annual_cap_rub: Roubles | None = Field(default=None, gt=0)


CORRECTABLE = tuple(ProgrammeChanges.model_fields)


class ProgrammeCorrectionCreate(ProgrammeChanges):
    """What an admin sends to correct a programme's screening rules, with a reason."""

    reason: Reason

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {"max_grant_rub": 200_000_000, "reason": "The cap was entered as 20 M, not 200 M."}
            ]
        }
    }

    @model_validator(mode="after")
    def _something(self) -> ProgrammeCorrectionCreate:
        if all(getattr(self, name) is None for name in CORRECTABLE):
            raise ValueError(f"nothing to correct: give at least one of {', '.join(CORRECTABLE)}")
        return self


class ProgrammeCorrection(Output):
    """Update input: an admin's correction of the programme (`correction_id` is unique)."""

    correction_id: str
    actor: Actor
    reason: str
    changes: ChangesSpec


class ProgrammeCorrected(Output):
    """Activity input: the programme as corrected, and what changed (field: [was, now])."""

    correction_id: str
    actor: Actor
    reason: str
    programme: ProgrammeStart
    changed: dict[str, list[object]]


class CorrectionPublic(Output):
    """One correction of a programme as admins see it: who, when, why and what changed."""

    at: datetime
    actor_name: str | None
    reason: str
    changed: dict[str, list[object]]
