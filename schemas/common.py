"""Vocabulary shared by every stage."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Roubles = Annotated[int, Field(ge=0, le=10**13, description="An amount in whole roubles.")]
# An admin's reason for an intervention. Blank is no reason: stripped first, so "   " is
# refused (422) like a missing one.
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000),
    Field(description="Why: recorded in the audit trail with your name."),
]


class Input(BaseModel):
    """Base of every model a caller sends: unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Output(BaseModel):
    """Base of every model grantflow returns or passes between workflows and activities."""

    model_config = ConfigDict(frozen=True)


class Role(StrEnum):
    applicant = "applicant"
    reviewer = "reviewer"
    council = "council"
    admin = "admin"
    coordinator = "coordinator"  # a clinic's pilot coordinator: belongs to one clinic


class OrganisationType(StrEnum):
    medical_institution = "medical_institution"
    university = "university"
    research_institute = "research_institute"
    company = "company"


class Stage(StrEnum):
    """Where an application is in its lifecycle (shared/DESIGN.md, section 2)."""

    submitted = "submitted"
    screening = "screening"
    revision_requested = "revision_requested"
    under_review = "under_review"
    reviewed = "reviewed"
    in_council = "in_council"
    approved = "approved"
    rejected = "rejected"
    deferred = "deferred"
    agreement = "agreement"
    piloting = "piloting"
    reporting = "reporting"
    closed = "closed"
    ineligible = "ineligible"
    withdrawn = "withdrawn"
    expired = "expired"
    cancelled = "cancelled"  # by an admin: a stuck application ended, its money returned

    @property
    def is_final(self) -> bool:
        return self in FINAL_STAGES


# The lifecycle's eight steps (submitted, screened, review, council, agreement, pilot,
# reporting, closed) and the step each stage is at; a stage that ended the application early
# stops there. Withdrawn and cancelled are not here: those stages no longer say how far the
# application got. The applicant's status bar and the admins' funnel both count by it.
STEP_OF_STAGE: dict[Stage, int] = {
    Stage.submitted: 0,
    Stage.screening: 1,
    Stage.revision_requested: 1,
    Stage.ineligible: 1,
    Stage.expired: 1,
    Stage.under_review: 2,
    Stage.reviewed: 3,
    Stage.in_council: 3,
    Stage.deferred: 3,
    Stage.rejected: 3,
    Stage.approved: 4,
    Stage.agreement: 4,
    Stage.piloting: 5,
    Stage.reporting: 6,
    Stage.closed: 7,
}


FINAL_STAGES = frozenset(
    {
        Stage.rejected,
        Stage.closed,
        Stage.ineligible,
        Stage.withdrawn,
        Stage.expired,
        Stage.cancelled,
    }
)


class Actor(Output):
    """Who performs a human action; the API fills it from the caller's token, never the body."""

    user_id: str
    role: Role
    name: str
    institution_id: str | None = None


class ApiError(Output):
    """Every refusal's body."""

    detail: str


class FieldError(Output):
    """One field's problem, as pydantic reports it."""

    type: str
    loc: list[str | int]
    msg: str


class InvalidInput(Output):
    """A 422's body: every field error (the request did not match the schema), or the reason
    (it matched, but the values do not hold together: an unknown clinic, a bad cursor...)."""

    detail: str | list[FieldError]
