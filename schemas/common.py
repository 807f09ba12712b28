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
