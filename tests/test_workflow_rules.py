"""The workflows' rules on their own, without Temporal: when reviewers are reminded and chased,
which reports a project owes and what holds its money back, where an agreement's end leaves
the application, and when a pilot's round is done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.agreement import (
    AgreementOutcome,
    AgreementStart,
    AgreementStatus,
    ProjectOutcome,
    ReportKind,
    ReportStatus,
    Tranche,
    TrancheStatus,
)
from schemas.common import Actor, Role, Stage
from schemas.pilot import PilotState, PilotStatus, SiteState, SiteStatus
from schemas.programme import ParamsSpec
from schemas.review import Task, TaskStatus
from workflows import agreement_rules, application_rules, pilot_rules, review_rules

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
APPLICANT = Actor(user_id="u-1", role=Role.applicant, name="Clinic 52")


def task(status: TaskStatus = TaskStatus.offered, **fields: object) -> Task:
    return Task(
        **{
            "task_id": "t-1",
            "reviewer_id": "r-1",
            "reviewer_name": "Dr. Volkova",
            "status": status,
            "offered_at": T0,
            "accept_by": T0 + 3 * HOUR,
            **fields,
        }
    )


# --- review ----------------------------------------------------------------------------------


def test_a_reviewer_is_reminded_the_lead_time_before_the_deadline_in_force() -> None:
    assert review_rules.reminder_at(task(), HOUR) == T0 + 2 * HOUR
    accepted = task(TaskStatus.accepted, due_by=T0 + 48 * HOUR)
    assert review_rules.reminder_at(accepted, HOUR) == T0 + 47 * HOUR
    assert review_rules.reminder_at(task(reminded=True), HOUR) is None


def test_no_reminder_when_the_whole_window_is_shorter_than_the_lead_time() -> None:
    assert review_rules.reminder_at(task(), 4 * HOUR) is None
    # The task still expires on time: its deadline is the next thing due.
    assert review_rules.next_due([task()], 4 * HOUR) == T0 + 3 * HOUR


def test_the_next_thing_due_is_the_earliest_reminder_or_deadline_of_the_open_tasks() -> None:
    late = task(task_id="t-2", accept_by=T0 + 10 * HOUR)
    assert review_rules.next_due([late, task()], HOUR) == T0 + 2 * HOUR
    assert review_rules.next_due([], HOUR) is None


def test_an_expired_reviewer_is_told_what_they_missed() -> None:
    text = review_rules.expired("AI triage", task(), T0)
    assert text.subject == "Review task expired: AI triage"
    assert text.body.startswith(f"You did not accept or decline by {T0.isoformat()}")
    accepted = task(TaskStatus.accepted, due_by=T0)
    assert review_rules.expiry_reason(accepted, T0).endswith(
        f"did not submit the review by {T0.isoformat()}"
    )


# --- agreement and reporting -----------------------------------------------------------------


def start(months: int) -> AgreementStart:
    params = ParamsSpec(
        tranche_interval=timedelta(days=360),
        report_interval=timedelta(days=90),
        financial_report_interval=timedelta(days=180),
    )
    return AgreementStart(
        application_id="a-1",
        programme_id="p-1",
        title="AI triage",
        applicant=APPLICANT,
        amount_rub=30_000_001,
        duration_months=months,
        params=params,
    )


def test_a_two_year_project_owes_quarterly_and_half_yearly_reports_then_the_final_one() -> None:
    reports = agreement_rules.report_schedule(T0, start(24))
    kinds = [r.kind for r in reports]
    assert kinds.count(ReportKind.progress) == 7  # days 90 ... 630
    assert kinds.count(ReportKind.financial) == 3  # days 180, 360, 540
    assert reports[-1].final and reports[-1].due_at == T0 + timedelta(days=720)
    assert [r.seq for r in reports] == list(range(1, len(reports) + 1))
    # On a shared date the progress report comes first.
    assert [r.kind for r in reports if r.due_at == T0 + timedelta(days=180)] == [
        ReportKind.progress,
        ReportKind.financial,
    ]


def test_the_money_splits_into_one_tranche_per_project_year_the_first_taking_the_rest() -> None:
    assert agreement_rules.tranche_count(24) == 2 and agreement_rules.tranche_count(1) == 1
    assert agreement_rules.split(30_000_001, 2) == [15_000_001, 15_000_000]


def test_a_tranche_is_held_by_the_reports_due_before_it_that_are_not_accepted() -> None:
    reports = agreement_rules.report_schedule(T0, start(24))
    second = Tranche(
        seq=2,
        amount_rub=15_000_000,
        due_at=T0 + timedelta(days=360),
        status=TrancheStatus.scheduled,
    )
    # Days 90, 180 (progress and financial), 270 and 360 (both): due by the tranche's day 360.
    assert agreement_rules.blocking_reports(reports, second) == [1, 2, 3, 4, 5, 6]
    accepted = [r.model_copy(update={"status": ReportStatus.accepted}) for r in reports[:6]]
    assert agreement_rules.blocking_reports(accepted + reports[6:], second) == []
    assert agreement_rules.held_by([second], reports[0]) == 2
    assert agreement_rules.held_by([second], reports[-1]) is None


def test_the_final_report_is_accepted_last_and_with_the_projects_outcome() -> None:
    reports = agreement_rules.report_schedule(T0, start(12))
    final = reports[-1].model_copy(update={"status": ReportStatus.submitted})
    assert agreement_rules.review_problem(reports, final, True, None) == (
        "accepting the final report needs the project's outcome"
    )
    assert agreement_rules.review_problem(reports, final, True, ProjectOutcome.implemented) == (
        "report 1 must be accepted before the final one"
    )
    assert agreement_rules.review_problem(reports, reports[0], True, None) == (
        "report 1 is due, not submitted"
    )


# --- the application -------------------------------------------------------------------------


def test_the_agreements_end_decides_the_applications_final_stage() -> None:
    def ending(status: AgreementStatus, outcome: ProjectOutcome | None = None) -> object:
        found = application_rules.agreement_ending(
            AgreementOutcome(status=status, disbursed_rub=0, project_outcome=outcome)
        )
        return found and (found.stage, found.outcome)

    assert ending(AgreementStatus.lapsed) == (Stage.expired, None)
    assert ending(AgreementStatus.declined) == (Stage.withdrawn, None)
    assert ending(AgreementStatus.stopped) == (Stage.closed, ProjectOutcome.not_implemented)
    assert ending(AgreementStatus.completed, ProjectOutcome.implemented) == (
        Stage.closed,
        ProjectOutcome.implemented,
    )
    assert ending(AgreementStatus.cancelled) is None


# --- the pilot -------------------------------------------------------------------------------


def site(seq: int, status: SiteStatus) -> SiteState:
    return SiteState(
        site_id=f"site-a-1-{seq}",
        application_id="a-1",
        title="AI triage",
        seq=seq,
        round=1,
        clinic_id=f"clinic-{seq}",
        status=status,
        starts_at=T0,
        ends_at=T0 + HOUR,
        report_by=T0 + 2 * HOUR,
        metrics=[],
    )


def test_a_round_is_done_once_every_site_ended_and_each_declined_one_was_replaced() -> None:
    sites = [site(1, SiteStatus.completed), site(2, SiteStatus.declined)]
    state = PilotState(application_id="a-1", status=PilotStatus.running, round=1, sites=sites)
    assert not pilot_rules.round_done(state, replaced=set(), running=0)
    assert pilot_rules.round_done(state, replaced={"site-a-1-2"}, running=0)
    assert not pilot_rules.round_done(state, replaced={"site-a-1-2"}, running=1)
