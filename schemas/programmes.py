"""Programmes: a call for applications with its budget, rules and durations."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from schemas.common import Input, OrganisationType, Output, Roubles

Duration = Annotated[timedelta, Field(gt=timedelta(0), description="ISO 8601 (P14D) or seconds.")]


class ProgrammeParams(Input):
    """Every duration and count the lifecycle needs. Production uses days; the simulator and
    the tests use seconds. Nothing in the code assumes a scale."""

    revision_window: Duration = timedelta(days=14)
    review_acceptance_window: Duration = timedelta(days=3)
    review_deadline: Duration = timedelta(days=21)
    reminder_lead_time: Duration = timedelta(days=2)
    reviews_required: int = Field(default=3, ge=1, le=10)


class ProgrammeCreate(Input):
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
    spec: ProgrammeCreate


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
