"""The admins' dashboard: what needs attention now (each a count of what its filtered list
shows), a programme's figures for its pictures, and what the application page needs besides
the history (the Temporal Web UI's address, the reviewers to choose from)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import quote

from grantflow.services import application, inspection
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.store import dashboard
from schemas.common import STEP_OF_STAGE, Role, Stage
from schemas.dashboard import (
    Attention,
    BudgetPoint,
    ClinicPilots,
    EscalatedSite,
    FunnelStep,
    ProgrammeCharts,
    ReviewerChoice,
    StoryLine,
)
from schemas.history import HistoryPublic
from workflows import ids

ESCALATED_SHOWN = 5
# The lifecycle's steps, and the furthest step each stage has reached. An application that
# ended early stops where it ended; a withdrawn or cancelled one is known only to have been
# submitted (its stage no longer says how far it got).
FUNNEL = ("submitted", "screened", "review", "council", "agreement", "pilot", "reporting", "closed")
REACHED = {**STEP_OF_STAGE, Stage.withdrawn: 0, Stage.cancelled: 0}
# The ledger's periods: fine enough for a test's seconds, coarse enough for a programme's years;
# at most about thirty points either way.
UNITS = (
    (timedelta(minutes=30), "minute", timedelta(minutes=1)),
    (timedelta(days=1), "hour", timedelta(hours=1)),
    (timedelta(days=30), "day", timedelta(days=1)),
    (timedelta(days=180), "week", timedelta(weeks=1)),
)
MONTH = ("month", timedelta(days=31))


async def attention(res: Resources, caller: Caller) -> Attention:
    """What needs an admin now, across programmes (admins): flagged applications, those with
    an overdue review or report, those reviewed and waiting for a council session, and pilot
    sites escalated for a late report (the longest waiting first)."""
    require(caller, Role.admin)
    counts = await dashboard.attention(res.pool)
    rows = await dashboard.escalated_sites(res.pool, ESCALATED_SHOWN)
    escalated = [
        EscalatedSite(
            site_id=r["id"],
            application_id=str(r["application_id"]),
            clinic=r["clinic"],
            status=r["status"],
            report_by=r["report_by"],
            since=r["updated_at"],
        )
        for r in rows
    ]
    total = rows[0]["total"] if rows else 0
    return Attention(**counts, escalated_sites=total, escalated=escalated)


async def programme_charts(
    res: Resources, caller: Caller, programme_id: uuid.UUID
) -> ProgrammeCharts:
    """A programme's figures for its pictures (admins): applications by stage and how far they
    got (the funnel), the budget over time, pilot sites by clinic and status, and the projects
    implemented or not. NotFound for an unknown programme."""
    require(caller, Role.admin)
    budget = await dashboard.budget(res.pool, programme_id)
    if budget is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    by_stage = await dashboard.stage_counts(res.pool, programme_id)
    outcomes = await dashboard.outcomes(res.pool, programme_id)
    return ProgrammeCharts(
        programme_id=str(programme_id),
        budget_rub=budget,
        by_stage=by_stage,
        funnel=funnel(by_stage),
        budget=await _budget(res, programme_id, budget),
        clinics=await _clinics(res, programme_id),
        implemented=outcomes.get("implemented", 0),
        not_implemented=outcomes.get("not_implemented", 0),
    )


def funnel(by_stage: dict[str, int]) -> list[FunnelStep]:
    """How many reached each step: everything at that step or beyond it."""
    reached = [0] * len(FUNNEL)
    for stage, n in by_stage.items():
        for step in range(REACHED[Stage(stage)] + 1):
            reached[step] += n
    return [FunnelStep(step=s, reached=n) for s, n in zip(FUNNEL, reached, strict=True)]


def _unit(first: datetime, last: datetime) -> tuple[str, timedelta]:
    span = abs(last - first)
    for longest, unit, step in UNITS:
        if span < longest:
            return unit, step
    return MONTH


async def _budget(res: Resources, programme_id: uuid.UUID, budget: int) -> list[BudgetPoint]:
    """Running totals at the end of each period, from an untouched budget the period before
    the first movement."""
    first, last = await dashboard.ledger_span(res.pool, programme_id)
    if first is None or last is None:
        return []
    unit, step = _unit(first, last)
    rows = await dashboard.ledger_buckets(res.pool, programme_id, unit)
    points = [BudgetPoint(at=rows[0]["at"] - step, approved=0, reserved=0, disbursed=0,
                          remaining=budget)]  # fmt: skip
    approved = disbursed = 0
    for row in rows:
        approved += row["reserved"] - row["released"]
        disbursed += row["disbursed"]
        points.append(
            BudgetPoint(
                at=row["at"],
                approved=approved,
                reserved=approved - disbursed,
                disbursed=disbursed,
                remaining=budget - approved,
            )
        )
    return points


async def _clinics(res: Resources, programme_id: uuid.UUID) -> list[ClinicPilots]:
    clinics: dict[str, ClinicPilots] = {}
    for row in await dashboard.pilot_sites(res.pool, programme_id):
        found = clinics.setdefault(
            row["clinic_id"], ClinicPilots(clinic_id=row["clinic_id"], clinic=row["clinic"],
                                           by_status={})
        )  # fmt: skip
        found.by_status[row["status"]] = row["n"]
    return sorted(clinics.values(), key=lambda c: (-sum(c.by_status.values()), c.clinic))


async def technical_view(res: Resources, caller: Caller, application_id: str) -> str:
    """The Temporal Web UI's list of the application's workflow runs, for the technical view
    (admins). NotFound for an unknown application."""
    require(caller, Role.admin)
    found = await application.get(res, caller, application_id)
    return workflows_url(res, found.id)


def workflows_url(res: Resources, application_id: str) -> str:
    """`technical_view`'s address, for an application already found."""
    query = quote(f'WorkflowId="{ids.application(application_id)}"', safe="")
    namespace = quote(res.client.namespace, safe="")
    return f"{res.settings.ui_url}/namespaces/{namespace}/workflows?query={query}"


async def reviewers(res: Resources, caller: Caller, specialty: str) -> list[ReviewerChoice]:
    """Reviewers of the specialty, by name, to offer an application to (admins)."""
    require(caller, Role.admin)
    rows = await dashboard.reviewers(res.pool, specialty, 200)
    return [ReviewerChoice(id=str(r["id"]), name=r["name"]) for r in rows]


async def story(
    res: Resources, caller: Caller, application_id: str, *, technical: bool = True
) -> tuple[HistoryPublic, list[StoryLine]]:
    """The application's merged history (services/inspection.py's `history`, admins) and its
    lines oldest first: each audit event with its stage, actor and reason apart, each workflow
    event marked technical; every line links to the Temporal Web UI. Without `technical`, the
    audit events' lines alone (the workflow events are not put in words). NotFound as
    `history`."""
    app_id = application.parse_id(application_id)
    history, rows = await inspection.history_and_rows(res, caller, app_id, technical=technical)
    links = {(e.at, e.kind): e.link for e in history.entries if e.source == "audit"}
    fallback = workflows_url(res, str(app_id))
    lines = [
        StoryLine(
            at=row["at"],
            kind=row["kind"],
            technical=False,
            text=row["kind"].replace("_", " "),
            stage=row["stage"],
            actor_role=row["actor_role"],
            actor_name=row["actor_name"],
            reason=row["reason"],
            link=links.get((row["at"], row["kind"]), fallback),
        )
        for row in rows
    ]
    lines += [
        StoryLine(at=e.at, kind=e.kind, technical=True, text=e.text, link=e.link,
                  actor_name=e.actor.name if e.actor else None)
        for e in history.entries
        if e.source == "temporal"
    ]  # fmt: skip
    lines.sort(key=lambda line: line.at)
    return history, lines
