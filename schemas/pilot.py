"""Pilot testing: the plan, its sites in clinics, the measurements, the evaluation and the
decision."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from schemas.agreement import ProjectOutcome
from schemas.common import Actor, Input, Output
from schemas.notifications import NewNotification
from schemas.programme import Duration, ParamsSpec

MetricName = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")]


# --- what workflows hold: the plan without the API's limits ----------------------------------
# Histories keep these for years; the HTTP bodies below subclass them and add their limits, so a
# limit tightened on the API later never stops a recorded history from replaying.


class MetricSpec(Output):
    """A planned metric as workflows hold it (`Metric` without its limits)."""

    name: str
    unit: str
    target: float
    higher_is_better: bool = True


class SitePlanSpec(Output):
    """One clinic of a plan as workflows hold it (`SitePlan` without its limits)."""

    clinic_id: str
    starts_at: datetime
    duration: timedelta
    metrics: Sequence[MetricSpec]


class PilotPlanSpec(Output):
    """A pilot plan as workflows hold it (`PilotPlanCreate` without its limits)."""

    sites: Sequence[SitePlanSpec]


# --- what applicants and admins send ---------------------------------------------------------


class Metric(MetricSpec, Input):
    """What a site measures and the target the pilot must reach."""

    name: MetricName
    unit: str = Field(min_length=1, max_length=40)
    target: float
    higher_is_better: bool = True


class SitePlan(SitePlanSpec, Input):
    """One clinic of the pilot: when it starts, how long it runs, what it reports."""

    clinic_id: str = Field(min_length=1, max_length=200, description="The clinic's institution id.")
    starts_at: AwareDatetime
    duration: Duration
    metrics: list[Metric] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _distinct(self) -> SitePlan:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metrics must have distinct names")
        return self


class PilotPlanCreate(PilotPlanSpec, Input):
    """The pilot plan: one or more clinics."""

    sites: list[SitePlan] = Field(min_length=1, max_length=30)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "sites": [
                        {
                            "clinic_id": "city-clinical-hospital-52",
                            "starts_at": "2027-02-01T00:00:00Z",
                            "duration": "P90D",
                            "metrics": [
                                {"name": "patients", "unit": "patients", "target": 400},
                                {"name": "accuracy", "unit": "%", "target": 92},
                            ],
                        }
                    ]
                }
            ]
        }
    }

    @model_validator(mode="after")
    def _distinct_clinics(self) -> PilotPlanCreate:
        clinics = [s.clinic_id for s in self.sites]
        if len(set(clinics)) != len(clinics):
            raise ValueError("each clinic appears once in a plan")
        return self


class SiteStatus(StrEnum):
    proposed = "proposed"
    accepted = "accepted"
    declined = "declined"
    running = "running"
    completed = "completed"
    cancelled = "cancelled"


class MetricResult(Output):
    name: str
    unit: str
    target: float
    measured: float
    met: bool


def results(metrics: Sequence[MetricSpec], measured: dict[str, float]) -> list[MetricResult]:
    """Each metric against its target."""
    return [
        MetricResult(
            name=m.name,
            unit=m.unit,
            target=m.target,
            measured=measured[m.name],
            met=measured[m.name] >= m.target
            if m.higher_is_better
            else measured[m.name] <= m.target,
        )
        for m in metrics
    ]


class SiteState(Output):
    """A pilot site as its workflow holds it; what coordinators and admins read."""

    site_id: str
    application_id: str
    title: str
    seq: int
    round: int
    clinic_id: str
    status: SiteStatus
    starts_at: datetime
    ends_at: datetime
    report_by: datetime
    metrics: Sequence[MetricSpec]
    results: list[MetricResult] = Field(default_factory=list)
    comments: str | None = None
    reason: str | None = None
    reminded: bool = False
    escalated: bool = False


class SiteStart(Output):
    """Workflow input of a pilot site."""

    site_id: str
    application_id: str
    programme_id: str
    title: str
    seq: int
    round: int
    plan: SitePlanSpec
    params: ParamsSpec
    accepted: bool = False  # an extension at a clinic already running the pilot


class SiteAnswer(Output):
    """Update input: the clinic coordinator accepts or declines (with a reason)."""

    actor: Actor
    accept: bool
    reason: str | None = None


class SiteDecline(Input):
    reason: str = Field(min_length=1, max_length=2_000)

    model_config = Input.model_config | {
        "json_schema_extra": {"examples": [{"reason": "No radiologist until spring."}]}
    }


class SiteReportSpec(Output):
    """A site's report as its workflow holds it (`SiteReportCreate` without its limits)."""

    measured: dict[str, float]
    comments: str = ""


class SiteReportCreate(SiteReportSpec, Input):
    """The site's measured metrics, by name, and the coordinator's comments."""

    measured: dict[MetricName, float] = Field(min_length=1)
    comments: str = Field(default="", max_length=20_000)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"measured": {"patients": 412, "accuracy": 93.5}, "comments": "On time."}]
        }
    }


class SiteReport(SiteReportSpec):
    actor: Actor


class SiteChange(Output):
    """Activity input: the site after its `version`-th change, with the event."""

    version: int
    kind: str
    at: datetime
    state: SiteState
    programme_id: str
    actor: Actor | None = None
    reason: str | None = None
    notify_coordinators: NewNotification | None = None  # one copy per coordinator of the clinic
    notify_admins: NewNotification | None = None


# --- the pilot --------------------------------------------------------------------------------


class Recommendation(StrEnum):
    implement = "implement"
    extend = "extend"
    stop = "stop"


class PilotStatus(StrEnum):
    running = "running"  # sites proposed, running or reporting
    evaluating = "evaluating"  # every site reported: an expert evaluates
    deciding = "deciding"  # the evaluation is in: an admin decides
    implement = "implement"
    stop = "stop"
    cancelled = "cancelled"


class EvaluationSpec(Output):
    """An evaluation as the pilot workflow holds it (`EvaluationCreate` without its limits)."""

    recommendation: Recommendation
    comments: str


class EvaluationCreate(EvaluationSpec, Input):
    """The independent expert's evaluation of the pilot against its targets."""

    recommendation: Recommendation
    comments: str = Field(min_length=1, max_length=20_000)

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [{"recommendation": "implement", "comments": "Targets met at both sites."}]
        }
    }


class Evaluation(EvaluationSpec):
    evaluator_id: str
    at: datetime
    results: dict[str, list[MetricResult]]  # by site id: what the expert evaluated


class EvaluationSubmission(EvaluationSpec):
    actor: Actor


class PilotDecisionSpec(Output):
    """A decision as the pilot workflow holds it (`PilotDecisionCreate` without its limits
    and rules)."""

    decision: Recommendation
    reason: str
    extend_sites: list[str] = Field(default_factory=list, description="Site ids to extend.")
    extension: timedelta | None = None


class PilotDecisionCreate(PilotDecisionSpec, Input):
    """An admin's decision on the pilot, with the evaluation before it. `extend` runs a further
    period of `extension` at the sites named."""

    decision: Recommendation
    reason: str = Field(min_length=1, max_length=5_000)
    extend_sites: list[str] = Field(default_factory=list, description="Site ids to extend.")
    extension: Duration | None = None

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {"decision": "implement", "reason": "Targets met; the evaluation recommends it."}
            ]
        }
    }

    @model_validator(mode="after")
    def _extension(self) -> PilotDecisionCreate:
        if (self.decision == Recommendation.extend) != bool(self.extend_sites and self.extension):
            raise ValueError("an extension names its sites and its duration, and only it does")
        return self


class PilotDecision(PilotDecisionSpec):
    actor: Actor
    at: datetime | None = None


class SiteProposal(Output):
    """An admin replaces a declined site with another clinic."""

    actor: Actor
    plan: SitePlanSpec
    replaces: str


class SiteProposalCreate(Input):
    replaces: str = Field(description="The declined site's id.")
    plan: SitePlan

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "replaces": "site-9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-1",
                    "plan": {
                        "clinic_id": "city-polyclinic-3",
                        "starts_at": "2027-03-01T00:00:00Z",
                        "duration": "P90D",
                        "metrics": [{"name": "patients", "unit": "patients", "target": 400}],
                    },
                }
            ]
        }
    }


class EvaluatorAssignment(Output):
    actor: Actor
    evaluator_id: str


class PilotStart(Output):
    application_id: str
    programme_id: str
    title: str
    specialty: str
    applicant_institution_id: str | None
    partner_institutions: list[str]
    plan: PilotPlanSpec
    params: ParamsSpec


class PilotState(Output):
    """The pilot: its sites, the evaluation, the decision."""

    application_id: str
    status: PilotStatus
    round: int
    sites: list[SiteState]
    evaluator_id: str | None = None
    evaluation: Evaluation | None = None
    decision: PilotDecision | None = None
    flag_reason: str | None = None


class PilotChange(Output):
    version: int
    kind: str
    at: datetime
    state: PilotState
    programme_id: str
    actor: Actor | None = None
    reason: str | None = None
    notify: list[NewNotification] = Field(default_factory=list)
    notify_admins: NewNotification | None = None


class EvaluatorRequest(Output):
    """Activity input: find the pilot's independent expert."""

    application_id: str
    specialty: str
    applicant_institution_id: str | None
    partner_institutions: list[str]
    evaluator_id: str | None = None  # an admin's choice, checked against the same rules


class EvaluatorFound(Output):
    evaluator: Actor | None
    refusal: str | None = None


class PilotOutcome(Output):
    decision: Recommendation | None
    project_outcome: ProjectOutcome | None


class PilotSummary(Output):
    """Programme outcome figures, from Postgres."""

    programme_id: str
    projects: int
    closed: int
    implemented: int
    implemented_share: float | None
    pilots_by_clinic: dict[str, dict[str, int]]
    overdue_reports: int


class PilotPlanRequest(Output):
    """Update input: the pilot plan, by the applicant or an admin."""

    actor: Actor
    plan: PilotPlanSpec
