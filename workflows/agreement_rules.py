"""The agreement's rules and texts: how the money is split into tranches, which reports a
project owes and when, what holds a tranche back, and what the applicant, the report reviewer
and the admins are told. Pure functions of their arguments (no clock, no workflow), so the
agreement workflow runs them in-process and replays get the same answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from schemas.agreement import (
    AgreementStart,
    Report,
    ReportKind,
    ReportStatus,
    Tranche,
    TrancheStatus,
)
from schemas.common import Actor
from schemas.history import Waiting

OPEN_REPORT = (ReportStatus.due, ReportStatus.returned)
UNPAID = (TrancheStatus.scheduled, TrancheStatus.held)


class Text(NamedTuple):
    """A notification's subject and body."""

    subject: str
    body: str


# --- money -----------------------------------------------------------------------------------


def split(amount: int, parts: int) -> list[int]:
    """`amount` in `parts` tranches as equal as roubles allow; the first takes the remainder."""
    base, rest = divmod(amount, parts)
    return [base + rest, *([base] * (parts - 1))]


def tranche_count(duration_months: int) -> int:
    """One tranche per project year."""
    return max(1, -(-duration_months // 12))


def blocking_reports(reports: list[Report], tranche: Tranche) -> list[int]:
    """The reports due by the tranche's date and not accepted: they hold it back."""
    assert tranche.due_at is not None
    due = tranche.due_at
    return [r.seq for r in reports if r.due_at <= due and r.status != ReportStatus.accepted]


def held_by(tranches: list[Tranche], report: Report) -> int | None:
    """The first unpaid tranche this report holds back, if any."""
    for tranche in tranches:
        if tranche.status in UNPAID and (
            tranche.due_at is not None and report.due_at <= tranche.due_at
        ):
            return tranche.seq
    return None


# --- reports ---------------------------------------------------------------------------------


def report_schedule(accepted_at: datetime, start: AgreementStart) -> list[Report]:
    """Progress reports every `report_interval` and financial reports every
    `financial_report_interval` until the project's end (one `tranche_interval` per project
    year), then the final report at the end; numbered in deadline order (progress first on a
    shared date)."""
    params = start.params
    end = accepted_at + params.tranche_interval * tranche_count(start.duration_months)
    dues: list[tuple[datetime, int, ReportKind]] = []
    cadences = [(params.report_interval, ReportKind.progress)]
    if params.financial_report_interval:
        cadences.append((params.financial_report_interval, ReportKind.financial))
    for order, (interval, kind) in enumerate(cadences):
        due = accepted_at + interval
        while due < end:
            dues.append((due, order, kind))
            due += interval
    reports = [
        Report(seq=i + 1, due_at=due, status=ReportStatus.due, kind=kind)
        for i, (due, _, kind) in enumerate(sorted(dues))
    ]
    reports.append(
        Report(
            seq=len(reports) + 1,
            due_at=end,
            status=ReportStatus.due,
            final=True,
            kind=ReportKind.final,
        )
    )
    return reports


def report_name(report: Report) -> str:
    """How notifications name a report: "final report", "financial report 4"."""
    return "final report" if report.final else f"{report.kind.value} report {report.seq}"


def needs_reminder(report: Report, now: datetime, lead: timedelta) -> bool:
    return report.status in OPEN_REPORT and not report.reminded and now >= report.due_at - lead


def is_late(report: Report, now: datetime) -> bool:
    """Due, not submitted, past its deadline, and not escalated yet."""
    return report.status == ReportStatus.due and not report.overdue and now >= report.due_at


def report_times(reports: list[Report], lead: timedelta) -> list[datetime]:
    """When the reports' next reminders and escalations fall due."""
    times = []
    for r in reports:
        if r.status in OPEN_REPORT and not r.reminded:
            times.append(r.due_at - lead)
        if r.status == ReportStatus.due and not r.overdue:
            times.append(r.due_at)
    return times


def review_problem(reports: list[Report], report: Report, accept: bool, outcome: object) -> str:
    """Why a report cannot be accepted or returned now ('' when it can)."""
    if report.status != ReportStatus.submitted:
        return f"report {report.seq} is {report.status}, not submitted"
    if not (report.final and accept):
        return "only accepting the final report sets the outcome" if outcome is not None else ""
    if outcome is None:
        return "accepting the final report needs the project's outcome"
    if waiting := [r.seq for r in reports[:-1] if r.status != ReportStatus.accepted]:
        return f"report {waiting[0]} must be accepted before the final one"
    return ""


# --- what people are told --------------------------------------------------------------------


def report_due(title: str, report: Report) -> Text:
    return Text(
        f"Your {report_name(report)} is due: {title}",
        f"Please submit it by {report.due_at.isoformat()}.",
    )


def report_overdue(title: str, report: Report) -> Text:
    return Text(
        f"{report_name(report).capitalize()} overdue: {title}",
        f"It was due {report.due_at.isoformat()} and has not been submitted.",
    )


def reports_assigned(title: str) -> Text:
    return Text(
        f"You review the reports of: {title}",
        "Accept each submitted report, or return it with a comment.",
    )


# --- who the agreement waits for -------------------------------------------------------------


def waiting_for_answer(workflow_id: str, applicant: Actor, accept_by: datetime) -> Waiting:
    return Waiting(
        workflow_id=workflow_id,
        who=f"applicant {applicant.name}",
        user_ids=[applicant.user_id],
        what="accept or decline the agreement",
        by=accept_by,
        otherwise="the approval lapses and its money returns to the budget",
    )


def waiting_for_report(
    workflow_id: str, applicant: Actor, report: Report, lead: timedelta, held: int | None
) -> Waiting:
    """The applicant's report: by when, and what its lateness costs."""
    if report.overdue:
        otherwise = "it is overdue and escalated to the admins"
    elif report.reminded:
        otherwise = "once late it is escalated to the admins"
    else:
        otherwise = (
            f"a reminder at {(report.due_at - lead).isoformat()}; once late it is "
            "escalated to the admins"
        )
    if held:
        otherwise += f"; tranche {held} stays held until it is accepted"
    returned = report.status == ReportStatus.returned
    again = f" again (returned: {report.comment})" if returned else ""
    return Waiting(
        workflow_id=workflow_id,
        who=f"applicant {applicant.name}",
        user_ids=[applicant.user_id],
        what=f"submit the {report_name(report)}{again}",
        by=report.due_at,
        otherwise=otherwise,
    )


def waiting_for_review(
    workflow_id: str, reviewer: Actor | None, report: Report, held: int | None
) -> Waiting:
    """A submitted report: its reviewer's (or the admins') to accept or return."""
    return Waiting(
        workflow_id=workflow_id,
        who=f"report reviewer {reviewer.name} or an admin" if reviewer else "admins",
        user_ids=[reviewer.user_id] if reviewer else [],
        what=f"accept or return the {report_name(report)}",
        otherwise=f"tranche {held} stays held" if held else "the report waits",
    )
