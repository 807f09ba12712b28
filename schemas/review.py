"""Expert review: the rubric, tasks, reviews, and what reviewers, applicants and admins see."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, Field

from schemas.common import Actor, Input, Output, Reason
from schemas.notifications import NewNotification
from schemas.programme import Criterion, ParamsSpec


class Recommendation(StrEnum):
    fund = "fund"
    fund_with_changes = "fund_with_changes"
    do_not_fund = "do_not_fund"


class TaskStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    submitted = "submitted"
    declined = "declined"
    expired = "expired"
    cancelled = "cancelled"

    @property
    def is_open(self) -> bool:
        return self in (TaskStatus.offered, TaskStatus.accepted)

    @property
    def holds_slot(self) -> bool:
        """Counts towards the reviews the application needs."""
        return self in (TaskStatus.offered, TaskStatus.accepted, TaskStatus.submitted)


# --- what reviewers send ---------------------------------------------------------------------


class ReviewSpec(Output):
    """A review as the review workflow holds it (`ReviewCreate` without its limits)."""

    scores: dict[str, int]
    recommendation: Recommendation
    comments: str


class ReviewCreate(ReviewSpec, Input):
    """A reviewer's review: one integer score per rubric criterion, within the programme's
    range, a recommendation and comments."""

    scores: dict[str, int]
    recommendation: Recommendation
    comments: str = Field(min_length=1, max_length=20_000)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "scores": {"clinical_value": 8, "novelty": 6, "feasibility": 7},
                    "recommendation": "fund_with_changes",
                    "comments": "Strong clinical case; the integration budget looks thin.",
                }
            ]
        }
    }


class DeclineCreate(Input):
    """Declining a task, with the reason. `conflict_of_interest` says the reviewer has a tie to
    the applicant that the data did not show: it is never offered this application again."""

    reason: str = Field(min_length=1, max_length=2_000)
    conflict_of_interest: bool = False

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"reason": "I advised this team last year.", "conflict_of_interest": True}]
        }
    }


class ReviewerAdd(Input):
    """An admin offers the application to a reviewer by hand."""

    reviewer_id: str = Field(min_length=1, max_length=64)
    reason: Reason

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "reviewer_id": "0b5e5a0e-3f0c-4c59-9a9b-6a1c2f3d4e5f",
                    "reason": "No cardiologist left in the pool; Dr. Petrov agreed by phone.",
                }
            ]
        }
    }


class DeadlineExtension(Input):
    """An admin moves the current deadline of a task (to accept, or to submit) later."""

    until: AwareDatetime
    reason: Reason

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"until": "2026-12-20T18:00:00Z", "reason": "Reviewer on sick leave."}]
        }
    }


# --- update inputs: the body plus who sends it (lenient: histories hold them) -----------------


class TaskAction(Output):
    """Update input for accept: the task and the reviewer acting on it."""

    actor: Actor
    task_id: str


class DeclineRequest(TaskAction):
    reason: str
    conflict_of_interest: bool = False


class SubmitRequest(TaskAction):
    review: ReviewSpec


class AddReviewerRequest(Output):
    actor: Actor
    reviewer_id: str
    reason: str


class ExtendRequest(Output):
    actor: Actor
    task_id: str
    until: datetime
    reason: str


# --- workflow input, state and output --------------------------------------------------------


class ReviewStart(Output):
    """The review workflow's input, from the application workflow."""

    application_id: str
    programme_id: str
    title: str
    specialty: str
    applicant_institution_id: str | None
    partner_institutions: list[str]
    params: ParamsSpec


class Task(Output):
    """One offer of the application to one reviewer, as the review workflow holds it."""

    task_id: str
    reviewer_id: str
    reviewer_name: str
    status: TaskStatus
    offered_at: datetime
    accept_by: datetime
    due_by: datetime | None = None
    reminded: bool = False  # for the current deadline
    reminders_sent: int = 0
    score: float | None = None
    recommendation: Recommendation | None = None
    reason: str | None = None

    @property
    def deadline(self) -> datetime | None:
        if self.status == TaskStatus.offered:
            return self.accept_by
        if self.status == TaskStatus.accepted:
            return self.due_by
        return None


class ReviewOutcome(Output):
    """What the review stage hands to the council: the aggregated score and its spread."""

    score: float
    spread: float
    reviews: int
    extra_reviewer_added: bool


class ReviewState(Output):
    """The review workflow's own view (a Query): tasks, progress, and any flag."""

    application_id: str
    required: int
    submitted: int
    tasks: list[Task]
    flag: str | None
    outcome: ReviewOutcome | None


# --- activity inputs -------------------------------------------------------------------------


class OfferRequest(Output):
    """Activity input: offer the application to the best eligible reviewer, or to
    `reviewer_id` when an admin chose one."""

    task_id: str
    version: int
    application_id: str
    programme_id: str
    workflow_id: str
    specialty: str
    title: str
    applicant_institution_id: str | None
    partner_institutions: list[str]
    offered_at: datetime
    accept_by: datetime
    reviewer_id: str | None = None
    assigned_by: Actor | None = None
    reason: str | None = None
    replaces: str | None = None  # the task this one replaces, for the audit trail


class Offered(Output):
    """Who got the task, or why nobody could."""

    reviewer: Actor | None
    refusal: str | None = None


class TaskUpdate(Output):
    task_id: str
    status: TaskStatus
    due_by: datetime | None
    deadline: datetime | None
    reason: str | None = None
    conflict_declared: bool = False
    reminders_sent: int = 0


class ReviewRecord(Output):
    task_id: str
    reviewer_id: str
    scores: dict[str, int]
    score: float
    recommendation: Recommendation
    comments: str
    submitted_at: datetime


class ReviewChange(Output):
    """Activity input: one change of the review stage, written with its audit event and
    notifications in one transaction. `version` is the review workflow's change counter."""

    application_id: str
    programme_id: str
    workflow_id: str
    version: int
    kind: str
    at: datetime
    actor: Actor | None = None
    reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    task: TaskUpdate | None = None
    review: ReviewRecord | None = None
    flag: str | None = None
    clear_flag: bool = False
    cancel_open_tasks: bool = False
    notify: list[NewNotification] = Field(default_factory=list)
    notify_admins: NewNotification | None = None  # one copy per admin


# --- what people read ------------------------------------------------------------------------


class InboxItem(Output):
    """A task in a reviewer's inbox (or the admin's overdue list)."""

    task_id: str
    application_id: str
    title: str
    specialty: str
    status: TaskStatus
    expected: str
    deadline: datetime | None
    overdue: bool
    offered_at: datetime
    reviewer_id: str | None = None  # admins only
    reviewer_name: str | None = None  # admins only


class InboxPage(Output):
    items: list[InboxItem]
    next_cursor: str | None


class ReviewPublic(Output):
    """A submitted review. Reviewer identity is shown only to admins and to fellow reviewers
    who have submitted their own."""

    scores: dict[str, int]
    score: float
    recommendation: Recommendation
    comments: str
    submitted_at: datetime
    reviewer_name: str | None = None


class TaskDetail(Output):
    """What a reviewer sees of its task: the application, its own review, and the others'
    only once its own is in."""

    task: InboxItem
    application: dict[str, Any]
    rubric: list[Criterion]
    score_range: Annotated[list[int], Field(min_length=2, max_length=2)]
    my_review: ReviewPublic | None
    other_reviews: list[ReviewPublic] | None


class FlaggedApplication(Output):
    application_id: str
    programme_id: str
    title: str
    specialty: str
    stage: str
    flag_reason: str
    flagged_at: datetime


class FlaggedPage(Output):
    items: list[FlaggedApplication]
    next_cursor: str | None


class ApplicationReviews(Output):
    """Everything about an application's review, for admins: every task with its reviewer and
    status, and every submitted review with its author."""

    application_id: str
    tasks: list[InboxItem]
    reviews: list[ReviewPublic]
    flag_reason: str | None
