"""Agreements: the approved amount, its tranches, and the reports that release them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from schemas.common import Actor, Input, Output
from schemas.programmes import ProgrammeParams


class AgreementStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    lapsed = "lapsed"
    declined = "declined"
    completed = "completed"
    cancelled = "cancelled"


class TrancheStatus(StrEnum):
    scheduled = "scheduled"
    held = "held"
    released = "released"
    cancelled = "cancelled"


class ReportStatus(StrEnum):
    due = "due"
    submitted = "submitted"
    accepted = "accepted"
    returned = "returned"


class Tranche(Output):
    seq: int
    amount_rub: int
    due_at: datetime | None
    status: TrancheStatus
    held_reason: str | None = None
    released_at: datetime | None = None


class Report(Output):
    """A progress report due before the tranche with the next number."""

    seq: int
    due_at: datetime
    status: ReportStatus
    body: str | None = None
    comment: str | None = None


class AgreementStart(Output):
    application_id: str
    programme_id: str
    title: str
    applicant: Actor
    amount_rub: int
    duration_months: int
    params: ProgrammeParams


class AgreementState(Output):
    """The agreement as its workflow holds it; also what the applicant and admins read."""

    application_id: str
    amount_rub: int
    status: AgreementStatus
    offered_at: datetime
    accept_by: datetime
    accepted_at: datetime | None
    tranches: list[Tranche]
    reports: list[Report]
    disbursed_rub: int


class AgreementChange(Output):
    """Activity input: the agreement's state after its `version`-th change, with the event."""

    version: int
    kind: str
    at: datetime
    state: AgreementState
    programme_id: str
    workflow_id: str
    actor: Actor | None = None
    reason: str | None = None


class AgreementOutcome(Output):
    status: AgreementStatus
    disbursed_rub: int


class AgreementDecline(Input):
    reason: str = Field(min_length=1, max_length=2_000)

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"reason": "Our partner clinic withdrew."}]}
    }


class AgreementAction(Input):
    """Update input: accept or decline the agreement."""

    actor: Actor
    reason: str | None = None


class ReportCreate(Input):
    body: str = Field(min_length=1, max_length=50_000)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"body": "Model trained on 40 000 studies; integration in 2 clinics."}]
        }
    }


class ReportDecision(Input):
    """An admin accepts a report, or returns it for changes with a comment."""

    accept: bool
    comment: str = Field(min_length=1, max_length=5_000)

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"accept": True, "comment": "Milestones met."}]}
    }


class ReportSubmission(Input):
    actor: Actor
    seq: int
    body: str


class ReportReview(Input):
    actor: Actor
    seq: int
    accept: bool
    comment: str
