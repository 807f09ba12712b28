"""Pilots as clinics, experts, applicants and admins live them, and the project's close:
sites accepted, declined and replaced, reminded and escalated, evaluated, extended, stopped;
reports on time, late, returned; the final report closing the project."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, eventually
from tests.test_agreement import agreement
from tests.test_council import Council, approve
from tests.test_review import notes, reaches

pytestmark = [SESSION, pytest.mark.system]
METRICS = [
    {"name": "patients", "unit": "patients", "target": 400},
    {"name": "minutes_saved", "unit": "min", "target": 10, "higher_is_better": False},
]


@pytest.fixture
def council(stack: Stack, admin: User, make_user: UserFactory) -> Council:
    return Council(stack, admin, make_user)


class Project:
    """An approved project with an accepted agreement, and the clinics around it."""

    def __init__(self, council: Council, applicant: User, app: dict[str, Any]) -> None:
        self.council, self.stack, self.applicant, self.app = council, council.stack, applicant, app
        self.base = f"/v1/applications/{app['id']}"

    @classmethod
    async def accepted(cls, council: Council, applicant: User, **params: Any) -> Project:
        app = await approve(council, applicant, **params)
        await agreement(council, applicant, app)
        accepted = await council.stack.api.post(
            f"/v1/applications/{app['id']}/agreement/acceptance", headers=applicant.headers
        )
        assert accepted.status_code == 200, accepted.text
        await reaches(council.stack, applicant, app["id"], "agreement")
        return cls(council, applicant, app)

    async def coordinator(self) -> User:
        return await self.council.make_user(Role.coordinator)

    async def plan(self, *clinics: User, duration: float = 1) -> Any:
        sites = [
            {
                "clinic_id": c.institution_id,
                "starts_at": datetime.now(UTC).isoformat(),
                "duration": duration,
                "metrics": METRICS,
            }
            for c in clinics
        ]
        return await self.stack.api.post(
            f"{self.base}/pilot", json={"sites": sites}, headers=self.applicant.headers
        )

    async def pilot(self, user: User | None = None) -> dict[str, Any]:
        response = await self.stack.api.get(
            f"{self.base}/pilot", headers=(user or self.council.admin).headers
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def site_of(self, clinic: User, status: str) -> dict[str, Any]:
        """The clinic's site of this project once it reaches `status`."""

        async def check() -> dict[str, Any] | None:
            response = await self.stack.api.get("/v1/clinic/sites", headers=clinic.headers)
            assert response.status_code == 200, response.text
            for site in response.json():
                if site["application_id"] == self.app["id"] and site["status"] == status:
                    found: dict[str, Any] = site
                    return found
            return None

        found: dict[str, Any] = await eventually(check, within=20)
        return found

    async def site(self, clinic: User, action: str, body: Any = None, *, status: str) -> Any:
        site = await self.site_of(clinic, status)
        return await self.stack.api.post(
            f"/v1/sites/{site['site_id']}/{action}", json=body, headers=clinic.headers
        )

    async def report_site(self, clinic: User, patients: float = 450, minutes: float = 8) -> Any:
        site = await self.site_of(clinic, "running")

        async def sent() -> Any:
            response = await self.stack.api.post(
                f"/v1/sites/{site['site_id']}/report",
                json={"measured": {"patients": patients, "minutes_saved": minutes}},
                headers=clinic.headers,
            )
            still_running = "runs here until" in response.text
            return None if still_running else response

        return await eventually(sent, within=20)

    async def status(self, wanted: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            pilot = await self.pilot()
            return pilot if pilot["status"] == wanted else None

        found: dict[str, Any] = await eventually(check, within=20)
        return found

    async def evaluator(self) -> User:
        async def find() -> User | None:
            for reviewer in self.council.reviewers:
                waiting = await self.stack.api.get("/v1/evaluations", headers=reviewer.headers)
                if self.app["id"] in waiting.json():
                    return reviewer
            return None

        found: User = await eventually(find)
        return found

    async def evaluate(self, recommendation: str) -> tuple[User, Any]:
        await self.status("evaluating")
        expert = await self.evaluator()
        response = await self.stack.api.post(
            f"{self.base}/pilot/evaluation",
            json={"recommendation": recommendation, "comments": "Targets checked."},
            headers=expert.headers,
        )
        return expert, response

    async def decide(self, decision: str, **body: Any) -> Any:
        return await self.stack.api.post(
            f"/v1/admin/applications/{self.app['id']}/pilot/decision",
            json={"decision": decision, "reason": f"{decision}: see evaluation", **body},
            headers=self.council.admin.headers,
        )

    async def report(self, seq: int, body: str = "Progress as planned.") -> Any:
        return await self.stack.api.post(
            f"{self.base}/reports/{seq}", json={"body": body}, headers=self.applicant.headers
        )

    async def review_report(self, seq: int, accept: bool, **body: Any) -> Any:
        return await self.stack.api.post(
            f"/v1/admin/applications/{self.app['id']}/reports/{seq}/decision",
            json={"accept": accept, "comment": "Reviewed.", **body},
            headers=self.council.admin.headers,
        )


@pytest.mark.slow
async def test_a_two_site_pilot_is_evaluated_and_implemented_then_the_final_report_closes_it(
    council: Council, applicant: User
) -> None:
    # The second tranche must not fall due before the final report closes the project, even on
    # the uncached worker of tests/test_uncached.py, where this life takes over a minute.
    project = await Project.accepted(
        council, applicant, tranche_interval=3600, report_interval=3600
    )
    first, second = await project.coordinator(), await project.coordinator()
    planned = await project.plan(first, second)
    assert planned.status_code == 200, planned.text
    assert planned.json()["stage"] == "piloting"
    for clinic in (first, second):
        accepted = await project.site(clinic, "acceptance", status="proposed")
        assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    # A clinic sees its own sites only.
    mine = (await project.stack.api.get("/v1/clinic/sites", headers=first.headers)).json()
    assert {s["clinic_id"] for s in mine} == {first.institution_id}
    early = await project.site(first, "report", {"measured": {"patients": 1}}, status="running")
    assert early.status_code == 409
    for clinic in (first, second):
        reported = await project.report_site(clinic)
        assert reported.status_code == 200, reported.text
        results = {r["name"]: r["met"] for r in reported.json()["results"]}
        assert results == {"patients": True, "minutes_saved": True}
    expert, evaluated = await project.evaluate("implement")
    assert evaluated.status_code == 200, evaluated.text
    assert expert.institution_id != applicant.institution_id
    assert set(evaluated.json()["evaluation"]["results"]) == {
        s["site_id"] for s in (await project.pilot())["sites"]
    }
    wrong = await project.stack.api.post(
        f"{project.base}/pilot/evaluation",
        json={"recommendation": "stop", "comments": "Me too."},
        headers=expert.headers,
    )
    assert wrong.status_code == 409
    decided = await project.decide("implement")
    assert decided.status_code == 200 and decided.json()["status"] == "implement"
    await reaches(project.stack, applicant, project.app["id"], "reporting")
    seen = await project.pilot(applicant)
    assert seen["decision"]["decision"] == "implement"

    # Reports: the final one needs the earlier one accepted, and the outcome.
    assert (await project.report(1, "Quarter one.")).status_code == 200
    assert (await project.report(2, "Final: in routine use at two clinics.")).status_code == 200
    refused = await project.review_report(2, True, outcome="implemented")
    assert refused.json()["detail"] == "report 1 must be accepted before the final one"
    returned = await project.review_report(1, False)
    assert returned.json()["status"] == "returned"
    assert (await project.report(1, "Quarter one, with numbers.")).status_code == 200
    assert (await project.review_report(1, True)).json()["status"] == "accepted"
    no_outcome = await project.review_report(2, True)
    assert no_outcome.json()["detail"] == "accepting the final report needs the project's outcome"
    assert (await project.review_report(2, True, outcome="implemented")).status_code == 200
    closed = await reaches(project.stack, applicant, project.app["id"], "closed")
    assert closed["stage"] == "closed"
    state = await agreement(council, applicant, project.app)
    assert state["status"] == "completed"
    assert [t["status"] for t in state["tranches"]] == ["released", "cancelled"]
    ledger = await council.ledger()
    assert [(e["kind"], e["amount_rub"]) for e in ledger["entries"]] == [
        ("reserve", 30_000_000),
        ("disburse", 15_000_000),
        ("release", 15_000_000),
    ]
    outcomes = await project.stack.api.get(
        f"/v1/programmes/{council.programme['id']}/outcomes", headers=council.admin.headers
    )
    figures = outcomes.json()
    assert figures["implemented"] == figures["closed"] == 1 and figures["implemented_share"] == 1
    assert figures["pilots_by_clinic"] == {
        first.institution_id: {"completed": 1},
        second.institution_id: {"completed": 1},
    }


@pytest.mark.slow
async def test_a_declined_site_is_replaced_a_silent_one_escalates_and_a_stop_returns_the_money(
    council: Council, applicant: User
) -> None:
    project = await Project.accepted(council, applicant, pilot_report_window=2)
    declining, silent = await project.coordinator(), await project.coordinator()
    assert (await project.plan(declining, duration=1)).status_code == 200
    declined = await project.site(
        declining, "decline", {"reason": "No radiologist until spring."}, status="proposed"
    )
    assert declined.json()["status"] == "declined"

    async def flagged() -> dict[str, Any] | None:
        pilot = await project.pilot()
        return pilot if pilot["flag_reason"] else None

    pilot = await eventually(flagged)
    assert "No radiologist until spring." in pilot["flag_reason"]
    assert any(n["kind"] == "pilot_attention" for n in await notes(project.stack, council.admin))
    replacement = await project.stack.api.post(
        f"/v1/admin/applications/{project.app['id']}/pilot/sites",
        json={
            "replaces": pilot["sites"][0]["site_id"],
            "plan": {
                "clinic_id": silent.institution_id,
                "starts_at": datetime.now(UTC).isoformat(),
                "duration": 1,
                "metrics": METRICS,
            },
        },
        headers=council.admin.headers,
    )
    assert replacement.status_code == 200, replacement.text
    assert (await project.site(silent, "acceptance", status="proposed")).status_code == 200

    async def escalated() -> dict[str, Any] | None:
        site = await project.site_of(silent, "running")
        return site if site["escalated"] else None

    await eventually(escalated, within=20)
    kinds = [n["kind"] for n in await notes(project.stack, silent)]
    assert "site_proposed" in kinds and "reminder" in kinds
    assert any(n["kind"] == "site_overdue" for n in await notes(project.stack, council.admin))
    late = await project.report_site(silent, patients=120, minutes=14)
    assert {r["name"]: r["met"] for r in late.json()["results"]} == {
        "patients": False,
        "minutes_saved": False,
    }
    _, evaluated = await project.evaluate("stop")
    assert evaluated.status_code == 200
    assert (await project.decide("stop")).status_code == 200
    closed = await reaches(project.stack, applicant, project.app["id"], "closed")
    assert closed["stage"] == "closed"
    state = await agreement(council, applicant, project.app)
    assert state["status"] == "stopped"
    ledger = await council.ledger()
    assert ledger["reserved_rub"] == 15_000_000 and ledger["disbursed_rub"] == 15_000_000
    assert ledger["balanced"]


@pytest.mark.slow
async def test_an_extension_runs_a_further_period_and_a_new_evaluation(
    council: Council, applicant: User
) -> None:
    project = await Project.accepted(council, applicant)
    clinic = await project.coordinator()
    await project.plan(clinic)
    await project.site(clinic, "acceptance", status="proposed")
    await project.report_site(clinic, patients=300)
    _, evaluated = await project.evaluate("extend")
    site_id = evaluated.json()["sites"][0]["site_id"]
    bad = await project.decide("extend")
    assert bad.status_code == 422
    extended = await project.decide("extend", extend_sites=[site_id], extension=1)
    assert extended.status_code == 200, extended.text
    assert extended.json()["round"] == 2
    second = await project.report_site(clinic, patients=420)
    assert second.json()["round"] == 2 and second.json()["results"][0]["met"]
    _, again = await project.evaluate("implement")
    assert again.status_code == 200
    assert set(again.json()["evaluation"]["results"]) == {second.json()["site_id"]}
    assert (await project.decide("implement")).status_code == 200
    await reaches(project.stack, applicant, project.app["id"], "reporting")


async def test_an_admin_names_the_evaluator_when_no_independent_expert_is_left(
    council: Council, applicant: User
) -> None:
    members = await council.setup()
    # Every expert of the specialty but one works at a partner of the applicant; that one
    # reviews the application, so no expert is left independent enough to evaluate its pilot.
    reviewer, *partnered = council.reviewers
    app = await council.reviewed(
        applicant, 8, partner_institutions=[r.institution_id for r in partnered]
    )
    session = await council.session()
    for member in members:
        await council.vote(session, member, app, "approve")
    assert (await council.close(session)).json()[0]["outcome"] == "approved"
    await agreement(council, applicant, app)
    base = f"/v1/applications/{app['id']}"
    accepted = await council.stack.api.post(
        f"{base}/agreement/acceptance", headers=applicant.headers
    )
    assert accepted.status_code == 200, accepted.text
    await reaches(council.stack, applicant, app["id"], "agreement")
    project = Project(council, applicant, app)
    clinic = await project.coordinator()
    assert (await project.plan(clinic)).status_code == 200
    await project.site(clinic, "acceptance", status="proposed")
    assert (await project.report_site(clinic)).status_code == 200

    async def flagged() -> dict[str, Any] | None:
        pilot = await project.pilot()
        return pilot if pilot["flag_reason"] else None

    pilot = await eventually(flagged)
    assert pilot["status"] == "evaluating" and pilot["evaluator_id"] is None
    assert pilot["flag_reason"] == "no eligible expert is left to evaluate the pilot"
    attention = [
        n
        for n in await notes(project.stack, council.admin)
        if n["kind"] == "pilot_attention" and n["application_id"] == app["id"]
    ]
    assert [n["body"] for n in attention] == [pilot["flag_reason"]]

    # The admin's choice is held to the same rules; the refusal says why.
    url = f"/v1/admin/applications/{app['id']}/pilot/evaluator"
    admin = council.admin.headers
    for refused_expert, why in [
        (reviewer, "reviewed this application: not independent"),
        (partnered[0], f"has a conflict of interest: {partnered[0].institution_id}"),
    ]:
        refused = await project.stack.api.post(
            url, params={"evaluator_id": refused_expert.id}, headers=admin
        )
        assert refused.status_code == 409 and refused.json()["detail"].endswith(why)
    by_applicant = await project.stack.api.post(
        url, params={"evaluator_id": reviewer.id}, headers=applicant.headers
    )
    assert by_applicant.status_code == 403

    expert = await council.reviewer()  # joined since: independent, no conflict
    assigned = await project.stack.api.post(url, params={"evaluator_id": expert.id}, headers=admin)
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["evaluator_id"] == expert.id
    assert assigned.json()["flag_reason"] is None
    assert (await project.pilot())["evaluator_id"] == expert.id
    waiting = await project.stack.api.get("/v1/evaluations", headers=expert.headers)
    assert waiting.json() == [app["id"]]
    requested = [n for n in await notes(project.stack, expert) if n["application_id"] == app["id"]]
    assert [n["kind"] for n in requested] == ["evaluation_requested"]
    for other in council.reviewers:
        inbox = await project.stack.api.get("/v1/evaluations", headers=other.headers)
        assert app["id"] not in inbox.json()

    evaluated = await project.stack.api.post(
        f"{base}/pilot/evaluation",
        json={"recommendation": "implement", "comments": "Targets met at the clinic."},
        headers=expert.headers,
    )
    assert evaluated.status_code == 200, evaluated.text
    assert evaluated.json()["evaluation"]["recommendation"] == "implement"
    assert (await project.decide("implement")).status_code == 200
    await reaches(project.stack, applicant, app["id"], "reporting")


async def test_a_pilot_is_planned_only_after_acceptance_and_only_at_known_clinics(
    council: Council, applicant: User
) -> None:
    project = await Project.accepted(council, applicant)
    unknown = await project.stack.api.post(
        f"{project.base}/pilot",
        json={
            "sites": [
                {
                    "clinic_id": "nowhere",
                    "starts_at": datetime.now(UTC).isoformat(),
                    "duration": 1,
                    "metrics": METRICS,
                }
            ]
        },
        headers=applicant.headers,
    )
    assert (
        unknown.status_code == 422 and unknown.json()["detail"] == "nowhere is not a known clinic"
    )
    clinic = await project.coordinator()
    assert (await project.plan(clinic)).status_code == 200
    twice = await project.plan(clinic)
    assert twice.status_code == 409
    stranger = await project.coordinator()
    assert (await project.stack.api.get("/v1/clinic/sites", headers=stranger.headers)).json() == []


@pytest.mark.slow
async def test_reports_on_time_late_and_returned_across_continue_as_new_lose_nothing(
    council: Council, applicant: User
) -> None:
    # Reports every second, tranche 2 after six of them; a new run every 5 changes.
    project = await Project.accepted(
        council, applicant, tranche_interval=6, report_interval=1, continue_as_new_after=5
    )
    assert (await project.report(1, "On time.")).status_code == 200
    assert (await project.review_report(1, True)).json()["status"] == "accepted"

    async def overdue(seq: int) -> dict[str, Any] | None:
        state = await agreement(council, applicant, project.app)
        report: dict[str, Any] = state["reports"][seq - 1]
        return report if report["overdue"] else None

    await eventually(lambda: overdue(2))
    # The programme's own queue: the session's other programmes have overdue reports too.
    queue = await project.stack.api.get(
        "/v1/admin/reports/overdue",
        params={"programme_id": project.app["programme_id"]},
        headers=council.admin.headers,
    )
    assert (project.app["id"], 2) in {(r["application_id"], r["seq"]) for r in queue.json()}
    assert (await project.report(2, "Late.")).status_code == 200
    assert (await project.review_report(2, False)).json()["status"] == "returned"
    assert (await project.report(2, "Late, with numbers.")).status_code == 200
    assert (await project.review_report(2, True)).json()["status"] == "accepted"
    for seq in range(3, 7):
        submitted = await project.report(seq, f"Period {seq}.")
        assert submitted.status_code == 200, submitted.text
        accepted = await project.review_report(seq, True)
        assert accepted.status_code == 200, accepted.text

    async def released() -> dict[str, Any] | None:
        state = await agreement(council, applicant, project.app)
        return state if state["tranches"][1]["status"] == "released" else None

    state = await eventually(released, within=20)
    assert [r["status"] for r in state["reports"][:6]] == ["accepted"] * 6
    assert [r["overdue"] for r in state["reports"][:2]] == [False, True]
    assert len(state["reports"]) == 12 and state["reports"][-1]["final"]
    history = await project.stack.client.get_workflow_handle(
        f"agreement-{project.app['id']}"
    ).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id, "the agreement never continued as new"
    reminders = [
        n["subject"]
        for n in await notes(project.stack, applicant)
        if n["kind"] == "reminder" and n["application_id"] == project.app["id"]
    ]
    # One reminder per report, none lost or repeated by a new run.
    assert len(reminders) == len(set(reminders)) == 12
    assert sum("final report" in r for r in reminders) == 1
    ledger = await council.ledger()
    assert ledger["disbursed_rub"] == 30_000_000 and ledger["balanced"]
