"""Agreements: the approved amount, its tranches, and the reports that release them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from schemas.common import Actor, Input, Output
from schemas.notifications import NewNotification
from schemas.programme import ParamsSpec


class AgreementStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    lapsed = "lapsed"
    declined = "declined"
    completed = "completed"
    cancelled = "cancelled"
    stopped = "stopped"  # the pilot's decision stopped the project


class ProjectOutcome(StrEnum):
    implemented = "implemented"
    not_implemented = "not_implemented"


class TrancheStatus(StrEnum):
    scheduled = "scheduled"
    held = "held"
    released = "released"
    cancelled = "cancelled"


class ReportKind(StrEnum):
    progress = "progress"  # every `report_interval`
    financial = "financial"  # every `financial_report_interval`
    final = "final"  # at the project's end; its acceptance closes the project


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
    """A report the project owes: progress and financial reports at the programme's cadences,
    then the final one. `seq` numbers them in deadline order. `overdue` stays true once the
    deadline passed without it (late is on record)."""

    seq: int
    due_at: datetime
    status: ReportStatus
    final: bool = False
    kind: ReportKind = ReportKind.progress
    body: str | None = None
    comment: str | None = None
    reminded: bool = False
    overdue: bool = False


class AgreementStart(Output):
    application_id: str
    programme_id: str
    title: str
    applicant: Actor
    amount_rub: int
    duration_months: int
    params: ParamsSpec
    carried: AgreementCarry | None = None


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
    report_reviewer: Actor | None = Field(
        default=None, description="The expert an admin assigned to accept or return reports."
    )


class AgreementCarry(Output):
    """What a run of the agreement workflow hands to the next when it continues as new."""

    state: AgreementState
    version: int


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
    notify: list[NewNotification] = Field(default_factory=list)
    notify_admins: NewNotification | None = None  # one copy per admin


class AgreementOutcome(Output):
    status: AgreementStatus
    disbursed_rub: int
    project_outcome: ProjectOutcome | None = None


class AgreementStop(Output):
    """Signal input: the pilot's decision stopped the project."""

    reason: str


class AgreementDecline(Input):
    reason: str = Field(min_length=1, max_length=2_000)

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"reason": "Our partner clinic withdrew."}]}
    }


class AgreementAction(Output):
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
    """An admin (or the assigned expert) accepts a report, or returns it for changes with a
    comment."""

    accept: bool
    comment: str = Field(min_length=1, max_length=5_000)
    outcome: ProjectOutcome | None = Field(
        default=None,
        description="Required to accept the final report: how the project closes.",
    )

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"accept": True, "comment": "Milestones met."}]}
    }


class ReportReviewerCreate(Input):
    """An admin assigns an expert to the project's reports: the one named (checked by the
    review stage's conflict rules) or, without `reviewer_id`, the least loaded eligible one."""

    reviewer_id: str | None = None
    reason: str = Field(min_length=1, max_length=2_000)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"reason": "Financial reports need a radiology economist's eye."}]
        }
    }


class ReportReviewerAssignment(Output):
    """Update input: assign (or replace) the expert who reviews the project's reports."""

    actor: Actor
    reviewer_id: str | None
    reason: str


class ReportReviewerRequest(Output):
    """Activity input: find (or check) the expert for an application's reports."""

    application_id: str
    reviewer_id: str | None = None


class ReportReviewerFound(Output):
    reviewer: Actor | None
    refusal: str | None = None


class ReportToReview(Output):
    """A submitted report waiting for the assigned expert."""

    application_id: str
    title: str
    seq: int
    kind: ReportKind
    due_at: datetime
    body: str | None


class ReportSubmission(Output):
    actor: Actor
    seq: int
    body: str


class ReportReview(Output):
    actor: Actor
    seq: int
    accept: bool
    comment: str
    outcome: ProjectOutcome | None = None


class OverdueReport(Output):
    """A report past its deadline that the project has not sent: for the admins' queue."""

    application_id: str
    title: str
    seq: int
    final: bool
    due_at: datetime
    status: ReportStatus
    kind: ReportKind = ReportKind.progress
