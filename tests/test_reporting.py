"""Reporting as applicants, experts and admins live it: progress and financial reports at
their own cadences, each reminded and escalated; an expert an admin assigned to a project's
reports accepting and returning them, and nobody else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.conftest import SESSION, Stack, User, eventually, programme_body
from tests.test_agreement import agreement
from tests.test_council import Council
from tests.test_pilot import Project
from tests.test_review import notes

pytestmark = [SESSION, pytest.mark.system]


@pytest.fixture
def council(stack: Any, admin: User, make_user: Any) -> Council:
    return Council(stack, admin, make_user)


def offsets(state: dict[str, Any]) -> list[tuple[str, float]]:
    """Each report's kind and deadline, in seconds from the agreement's acceptance."""
    accepted = datetime.fromisoformat(state["accepted_at"])
    return [
        (r["kind"], (datetime.fromisoformat(r["due_at"]) - accepted).total_seconds())
        for r in state["reports"]
    ]


@pytest.mark.slow
async def test_progress_and_financial_reports_run_at_their_cadences_and_both_hold_a_tranche(
    council: Council, applicant: User
) -> None:
    # Two project years of 6 s: progress every 2 s, financial every 3 s, the final at 12 s.
    project = await Project.accepted(
        council,
        applicant,
        tranche_interval=6,
        report_interval=2,
        financial_report_interval=3,
        reminder_lead_time=1,
    )
    state = await agreement(council, applicant, project.app)
    assert offsets(state) == [
        ("progress", 2),
        ("financial", 3),
        ("progress", 4),
        ("progress", 6),
        ("financial", 6),
        ("progress", 8),
        ("financial", 9),
        ("progress", 10),
        ("final", 12),
    ]
    assert [r["final"] for r in state["reports"]] == [False] * 8 + [True]
    assert (await project.report(1, "Progress, quarter one.")).status_code == 200
    assert (await project.review_report(1, True)).json()["status"] == "accepted"

    async def overdue(seq: int) -> dict[str, Any] | None:
        report: dict[str, Any] = (await agreement(council, applicant, project.app))["reports"][
            seq - 1
        ]
        return report if report["overdue"] else None

    # The financial report is not sent: reminded, then escalated to the admins.
    await eventually(lambda: overdue(2))
    # The programme's own queue: the session's other programmes have overdue reports too.
    queue = await project.stack.api.get(
        "/v1/admin/reports/overdue",
        params={"programme_id": project.app["programme_id"]},
        headers=council.admin.headers,
    )
    late = [r for r in queue.json() if r["application_id"] == project.app["id"]]
    assert (late[0]["seq"], late[0]["kind"]) == (2, "financial")
    subjects = [n["subject"] for n in await notes(project.stack, council.admin)]
    assert f"Financial report 2 overdue: {late[0]['title']}" in subjects
    reminded = [n["subject"] for n in await notes(project.stack, applicant)]
    assert f"Your financial report 2 is due: {late[0]['title']}" in reminded
    figures = f"/v1/programmes/{council.programme['id']}/outcomes"
    assert (await project.stack.api.get(figures, headers=applicant.headers)).status_code == 403
    outcome = await project.stack.api.get(figures, headers=council.admin.headers)
    assert outcome.json()["overdue_reports"] >= 1

    # Tranche 2 (at 6 s) waits for every report due by then, the financial ones included.
    for seq in (3, 4, 5):
        assert (await project.report(seq, f"Report {seq}.")).status_code == 200
        assert (await project.review_report(seq, True)).status_code == 200

    async def held() -> dict[str, Any] | None:
        tranche: dict[str, Any] = (await agreement(council, applicant, project.app))["tranches"][1]
        return tranche if tranche["status"] == "held" else None

    tranche = await eventually(held, within=20)
    assert tranche["held_reason"] == "report 2 is not accepted yet"
    assert (await project.report(2, "Financial, year one: 14.2 M spent.")).status_code == 200
    assert (await project.review_report(2, True)).json()["kind"] == "financial"

    async def released() -> dict[str, Any] | None:
        state = await agreement(council, applicant, project.app)
        return state if state["tranches"][1]["status"] == "released" else None

    paid = await eventually(released)
    assert paid["disbursed_rub"] == 30_000_000
    # Report 2 is in: it is no longer counted among the programme's overdue reports, though
    # its lateness stays on record.
    assert paid["reports"][1]["overdue"] and paid["reports"][1]["status"] == "accepted"

    async def counted_as_on_record() -> bool:
        count = (await project.stack.api.get(figures, headers=council.admin.headers)).json()
        state = await agreement(council, applicant, project.app)
        open_late = [
            r for r in state["reports"] if r["overdue"] and r["status"] in ("due", "returned")
        ]
        return bool(count["overdue_reports"] == len(open_late))

    assert await eventually(counted_as_on_record)


@pytest.mark.slow
async def test_financial_reports_can_be_switched_off(council: Council, applicant: User) -> None:
    project = await Project.accepted(
        council, applicant, tranche_interval=3600, report_interval=1800, financial_report_interval=0
    )
    state = await agreement(council, applicant, project.app)
    assert [k for k, _ in offsets(state)] == ["progress"] * 3 + ["final"]


@pytest.mark.slow
async def test_an_assigned_expert_accepts_and_returns_reports_and_no_other_expert_can(
    council: Council, applicant: User
) -> None:
    project = await Project.accepted(
        council, applicant, tranche_interval=3600, report_interval=1800
    )
    api, admin, base = (
        project.stack.api,
        council.admin,
        f"/v1/admin/applications/{project.app['id']}",
    )
    conflicted = await council.reviewer(institution=applicant.institution_id)
    refused = await api.post(
        f"{base}/reports/reviewer",
        json={"reviewer_id": conflicted.id, "reason": "Knows the hospital."},
        headers=admin.headers,
    )
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"{conflicted.name} has a conflict of interest: {applicant.institution_id}"
    )
    not_admin = await api.post(
        f"{base}/reports/reviewer", json={"reason": "Me."}, headers=council.reviewers[0].headers
    )
    assert not_admin.status_code == 403

    # Without a name, the review stage's matching picks a free expert of the specialty.
    assigned = await api.post(
        f"{base}/reports/reviewer",
        json={"reason": "The admins are short of time this quarter."},
        headers=admin.headers,
    )
    assert assigned.status_code == 200, assigned.text
    chosen = assigned.json()["report_reviewer"]
    expert = next(r for r in council.reviewers if r.id == chosen["user_id"])
    others = [r for r in council.reviewers if r is not expert]
    assert applicant.institution_id != chosen["institution_id"]
    assert any(n["kind"] == "reports_assigned" for n in await notes(project.stack, expert))
    timeline = await api.get(
        f"/v1/applications/{project.app['id']}/timeline", headers=admin.headers
    )
    entry = next(e for e in timeline.json() if e["kind"] == "report_reviewer_assigned")
    assert entry["actor_role"] == "admin"
    assert entry["reason"] == f"The admins are short of time this quarter. (expert: {expert.name})"

    assert (await project.report(1, "Quarter one.")).status_code == 200
    waiting = (await api.get("/v1/report-reviews", headers=expert.headers)).json()
    assert [(r["application_id"], r["seq"], r["kind"]) for r in waiting] == [
        (project.app["id"], 1, "progress")
    ]
    assert waiting[0]["body"] == "Quarter one."
    decision = f"/v1/applications/{project.app['id']}/reports/1/decision"
    for other in others:
        assert (await api.get("/v1/report-reviews", headers=other.headers)).json() == []
        nosy = await api.post(
            decision, json={"accept": True, "comment": "Fine."}, headers=other.headers
        )
        assert nosy.status_code == 404
        peek = await api.get(
            f"/v1/applications/{project.app['id']}/agreement", headers=other.headers
        )
        assert peek.status_code == 404
    by_applicant = await api.post(
        decision, json={"accept": True, "comment": "Mine is fine."}, headers=applicant.headers
    )
    assert by_applicant.status_code == 403
    seen = await api.get(f"/v1/applications/{project.app['id']}/agreement", headers=expert.headers)
    assert seen.status_code == 200 and seen.json()["report_reviewer"]["user_id"] == expert.id

    returned = await api.post(
        decision,
        json={"accept": False, "comment": "Add the patient counts."},
        headers=expert.headers,
    )
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "returned"
    mine = await agreement(council, applicant, project.app)
    assert mine["reports"][0]["comment"] == "Add the patient counts."
    assert (await project.report(1, "Quarter one: 212 patients.")).status_code == 200
    accepted = await api.post(
        decision, json={"accept": True, "comment": "Counts added."}, headers=expert.headers
    )
    assert accepted.json()["status"] == "accepted"
    assert (await api.get("/v1/report-reviews", headers=expert.headers)).json() == []
    again = await api.post(
        decision, json={"accept": True, "comment": "Twice."}, headers=expert.headers
    )
    assert (
        again.status_code == 409 and again.json()["detail"] == "report 1 is accepted, not submitted"
    )
    # Admins keep the right to review.
    assert (await project.report(2, "Quarter two.")).status_code == 200
    assert (await project.review_report(2, True)).json()["status"] == "accepted"


async def test_a_reporting_cadence_past_52_reports_a_year_is_refused(
    stack: Stack, admin: User
) -> None:
    # Weekly progress reports, no financial ones: 52 a year, the most a programme may ask.
    weekly = programme_body(
        params={
            "tranche_interval": "P364D",
            "report_interval": "P7D",
            "financial_report_interval": 0,
        }
    )
    created = await stack.api.post("/v1/programmes", json=weekly, headers=admin.headers)
    assert created.status_code == 201, created.text
    # A report every second of a one-hour project year, as a slip of units would ask for.
    for params in (
        {"tranche_interval": 3600, "report_interval": 1},
        {"tranche_interval": "P364D", "report_interval": "P7D", "financial_report_interval": "P7D"},
    ):
        refused = await stack.api.post(
            "/v1/programmes", json=programme_body(params=params), headers=admin.headers
        )
        assert refused.status_code == 422, refused.text
        assert "at most 52" in refused.json()["detail"]
    listed = await stack.api.get("/v1/programmes", headers=admin.headers)
    assert weekly["name"] in [p["name"] for p in listed.json()]
