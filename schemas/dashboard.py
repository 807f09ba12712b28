"""What the admins' dashboard shows: what needs attention now, and a programme's pictures (its
funnel, its budget over time, its pilots by clinic, the implemented share)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.common import Output


class EscalatedSite(Output):
    """A pilot site escalated to admins (its report is late)."""

    site_id: str
    application_id: str
    clinic: str
    status: str
    report_by: datetime
    since: datetime


class Attention(Output):
    """Applications that need an admin now; each count is what its filtered list counts."""

    flagged: int
    overdue_reviews: int
    overdue_reports: int
    waiting_council: int
    escalated_sites: int
    escalated: list[EscalatedSite] = Field(description="The longest escalated first, a few.")


class FunnelStep(Output):
    """How many applications reached a step of the lifecycle (or went beyond it)."""

    step: str
    reached: int


class BudgetPoint(Output):
    """The budget at the end of a period: approved and still standing (reserved not yet paid
    plus disbursed), reserved, disbursed, and what remains to approve."""

    at: datetime
    approved: int
    reserved: int
    disbursed: int
    remaining: int


class ClinicPilots(Output):
    clinic_id: str
    clinic: str
    by_status: dict[str, int]


class ProgrammeCharts(Output):
    programme_id: str
    budget_rub: int
    by_stage: dict[str, int]
    funnel: list[FunnelStep]
    budget: list[BudgetPoint]
    clinics: list[ClinicPilots]
    implemented: int
    not_implemented: int


class ReviewerChoice(Output):
    id: str
    name: str


class StoryLine(Output):
    """One line of an application's history as the admins' page tells it: a domain event (who
    did what, in which stage, why) or, `technical`, a workflow event in the engine's words."""

    at: datetime
    kind: str
    technical: bool
    text: str
    stage: str | None = None
    actor_role: str | None = None
    actor_name: str | None = None
    reason: str | None = None
    link: str
