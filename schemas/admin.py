"""What admins send and see: the filtered application list, interventions, exports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, Field

from schemas.common import Actor, Input, Output, Reason, Stage
from schemas.programme import ProgrammeStart


class AdminApplication(Output):
    """One line of the admins' list: enough to find it, not the whole application."""

    id: str
    programme_id: str
    title: str
    institution_id: str | None
    specialty: str
    stage: Stage
    requested_rub: int
    approved_rub: int | None
    review_score: float | None
    deadline: datetime | None
    overdue: bool = Field(
        description="A deadline passed: the applicant's, an open review task's, or a report's."
    )
    flag_reason: str | None
    submitted_at: datetime
    updated_at: datetime


class AdminApplicationPage(Output):
    """A page of the filtered list, newest first, with the counts of everything that matches
    (`total`) and, ignoring the `stage` filter, how many match in each stage (`by_stage`)."""

    items: list[AdminApplication]
    next_cursor: str | None
    total: int
    by_stage: dict[str, int]


class DeadlineKind(StrEnum):
    revision = "revision"  # the applicant's revision window
    review = "review"  # a review task's current deadline (`task_id`)
    agreement = "agreement"  # the applicant's window to accept the agreement
    report = "report"  # a report's deadline (`seq`)


class DeadlineMove(Input):
    """Move one of the application's deadlines later, with a reason."""

    kind: DeadlineKind
    until: AwareDatetime
    reason: Reason
    task_id: str | None = Field(default=None, description="The review task (kind `review`).")
    seq: int | None = Field(default=None, ge=1, description="The report (kind `report`).")

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {"kind": "revision", "until": "2026-12-20T18:00:00Z", "reason": "Lab results late."}
            ]
        }
    }


class InterventionCreate(Input):
    """An intervention that needs only a reason (re-run screening, cancel)."""

    reason: Reason

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"reason": "The council session was abandoned."}]}
    }


class ReassignCreate(Input):
    """Take a review task away from its reviewer: to the reviewer named, or (without
    `reviewer_id`) to the next eligible expert by the usual matching."""

    reviewer_id: str | None = Field(default=None, min_length=1, max_length=64)
    reason: Reason

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "reviewer_id": "2c0a7d1e-4f5b-4c3d-9e8f-7a6b5c4d3e2f",
                    "reason": "The reviewer is on sick leave.",
                },
                {"reason": "No answer for a week: the next eligible expert, please."},
            ]
        }
    }


# --- update inputs (the API fills `actor` from the caller's token) ---------------------------


class AdminAction(Output):
    """Update input: an admin's intervention with its reason."""

    actor: Actor
    reason: str


class DeadlineRequest(AdminAction):
    """Update input: move a deadline (the revision window; or, with `seq`, a report's;
    without it, the agreement's acceptance window) to `until`."""

    until: datetime
    seq: int | None = None


class RescreenRequest(AdminAction):
    """Update input: screen the application again against the programme as it stands."""

    programme: ProgrammeStart


class ReassignRequest(AdminAction):
    """Update input: take `task_id` away from its reviewer."""

    task_id: str
    reviewer_id: str | None = None


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


class Dataset(StrEnum):
    applications = "applications"
    reviews = "reviews"
    decisions = "decisions"
    ledger = "ledger"
    reports = "reports"
