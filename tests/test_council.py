"""The council as its members, chairs, applicants and admins live it: agendas, votes,
decisions under the budget, agreements, tranches and the reports that release them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, eventually
from tests.test_review import Competition, reaches, review

pytestmark = SESSION


class Council(Competition):
    """A competition with its own reviewers, council members and sessions."""

    async def setup(
        self, *, members: int = 3, budget_rub: int | None = None, **params: Any
    ) -> list[User]:
        money = {"budget_rub": budget_rub, "max_grant_rub": budget_rub} if budget_rub else {}
        await self.open(programme=money, reviews_required=1, **params)
        self.reviewers = [await self.reviewer() for _ in range(4)]
        self.members = [await self.make_user(Role.council) for _ in range(members)]
        return self.members

    async def reviewed(self, applicant: User, score: int, **overrides: Any) -> dict[str, Any]:
        """An application that went through review with the given score on every criterion."""
        app = await self.submit(applicant, **overrides)
        scores = {"clinical_value": score, "novelty": score, "feasibility": score}
        await review(self.stack, await self._offered_reviewer(app["id"]), app["id"], scores)
        return await reaches(self.stack, applicant, app["id"], "reviewed")

    async def _offered_reviewer(self, application_id: str) -> User:
        async def find() -> User | None:
            for reviewer in self.reviewers:
                inbox = await self.stack.api.get("/v1/reviews", headers=reviewer.headers)
                if any(t["application_id"] == application_id for t in inbox.json()["items"]):
                    return reviewer
            return None

        found: User = await eventually(find)
        return found

    async def session(self, name: str = "March session", **body: Any) -> dict[str, Any]:
        response = await self.stack.api.post(
            f"/v1/programmes/{self.programme['id']}/council-sessions",
            json={"name": name, "member_ids": [m.id for m in self.members], **body},
            headers=self.admin.headers,
        )
        assert response.status_code == 201, response.text
        state: dict[str, Any] = response.json()
        return state

    async def vote(
        self, session: dict[str, Any], member: User, app: dict[str, Any], choice: str, **kw: Any
    ) -> Any:
        return await self.stack.api.post(
            f"/v1/council-sessions/{session['session_id']}/votes",
            json={"application_id": app["id"], "choice": choice, "reason": f"{choice}!", **kw},
            headers=member.headers,
        )

    async def close(self, session: dict[str, Any], user: User | None = None) -> Any:
        return await self.stack.api.post(
            f"/v1/council-sessions/{session['session_id']}/close",
            headers=(user or self.admin).headers,
        )

    async def ledger(self) -> dict[str, Any]:
        response = await self.stack.api.get(
            f"/v1/programmes/{self.programme['id']}/ledger", headers=self.admin.headers
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture
def council(stack: Stack, admin: User, make_user: UserFactory) -> Council:
    return Council(stack, admin, make_user)


async def test_the_agenda_ranks_reviewed_applications_by_score_without_reviewer_names(
    council: Council, applicant: User
) -> None:
    await council.setup()
    low = await council.reviewed(applicant, 4, title="Low scorer")
    high = await council.reviewed(applicant, 9, title="High scorer")
    session = await council.session()
    agenda = session["agenda"]
    assert [(i["rank"], i["application_id"]) for i in agenda] == [(1, high["id"]), (2, low["id"])]
    assert agenda[0]["score"] == 9 and agenda[0]["requested_rub"] == 30_000_000
    assert agenda[0]["reviews"] == [
        {"score": 9.0, "recommendation": "fund", "comments": "Sound plan."}
    ]
    text = str(session)
    for reviewer in council.reviewers:
        assert reviewer.id not in text and reviewer.name not in text
    assert (await reaches(council.stack, applicant, high["id"], "in_council"))[
        "stage"
    ] == "in_council"
    read = await council.stack.api.get(
        f"/v1/council-sessions/{session['session_id']}", headers=council.members[0].headers
    )
    assert read.status_code == 200 and read.json()["agenda"] == agenda
    hidden = await council.stack.api.get(
        f"/v1/council-sessions/{session['session_id']}", headers=applicant.headers
    )
    assert hidden.status_code == 403


async def test_the_majority_decides_and_an_approval_takes_the_smallest_amount_named(
    council: Council, applicant: User
) -> None:
    a, b, c = await council.setup()
    approved = await council.reviewed(applicant, 8)
    rejected = await council.reviewed(applicant, 5)
    session = await council.session()
    await council.vote(session, a, approved, "approve", amount_rub=25_000_000)
    await council.vote(session, b, approved, "approve", amount_rub=20_000_000)
    tally = await council.vote(session, c, approved, "reject")
    assert tally.json() == {"approve": 2, "reject": 1, "defer": 0}
    for member, choice in ((a, "reject"), (b, "reject"), (c, "approve")):
        await council.vote(session, member, rejected, choice)
    closed = await council.close(session)
    assert closed.status_code == 200, closed.text
    decisions = {d["application_id"]: d for d in closed.json()}
    assert decisions[approved["id"]]["outcome"] == "approved"
    assert decisions[approved["id"]]["amount_rub"] == 20_000_000
    assert decisions[rejected["id"]]["outcome"] == "rejected"
    assert "reject!" in decisions[rejected["id"]]["reason"]
    await reaches(council.stack, applicant, approved["id"], "approved")
    seen = await reaches(council.stack, applicant, rejected["id"], "rejected")
    timeline = await council.stack.api.get(
        f"/v1/applications/{rejected['id']}/timeline", headers=applicant.headers
    )
    last = timeline.json()[-1]
    assert last["kind"] == "council_rejected" and seen["stage"] == "rejected"
    assert "reject!" in last["reason"]
    assert all(m.name not in str(last) for m in (a, b, c))  # reasons, not who voted
    ledger = await council.ledger()
    assert ledger["reserved_rub"] == 20_000_000 and ledger["balanced"]


async def test_an_item_without_the_quorum_or_voted_deferred_comes_back_next_session(
    council: Council, applicant: User
) -> None:
    a, b, c = await council.setup(council_quorum=3)
    app = await council.reviewed(applicant, 7)
    first = await council.session("March")
    await council.vote(first, a, app, "approve")
    await council.vote(first, b, app, "approve")
    decision = (await council.close(first)).json()[0]
    assert decision["outcome"] == "deferred"
    assert decision["reason"] == "quorum not met: 2 of 3 votes"
    await reaches(council.stack, applicant, app["id"], "deferred")
    second = await council.session("April")
    assert [i["application_id"] for i in second["agenda"]] == [app["id"]]
    await reaches(council.stack, applicant, app["id"], "in_council")
    for member in (a, b, c):
        await council.vote(second, member, app, "defer")
    deferred = (await council.close(second)).json()[0]
    assert deferred["outcome"] == "deferred" and "defer!" in deferred["reason"]
    await reaches(council.stack, applicant, app["id"], "deferred")
    third = await council.session("May")
    assert [i["application_id"] for i in third["agenda"]] == [app["id"]]


async def test_every_invalid_vote_is_refused_with_its_reason(
    council: Council, applicant: User, make_user: UserFactory
) -> None:
    a, _, _ = await council.setup()
    app = await council.reviewed(applicant, 7)
    session = await council.session()
    outsider = await make_user(Role.council)
    refused = {
        "you are not a member of this council session": await council.vote(
            session, outsider, app, "approve"
        ),
        "this application is not on the session's agenda": await council.vote(
            session, a, {"id": "00000000-0000-0000-0000-000000000000"}, "approve"
        ),
        "the amount 30 000 001 RUB is above the requested 30 000 000 RUB": await council.vote(
            session, a, app, "approve", amount_rub=30_000_001
        ),
        "only an approval can name an amount": await council.vote(
            session, a, app, "reject", amount_rub=1
        ),
    }
    for reason, response in refused.items():
        assert response.status_code == 409, response.text
        assert response.json()["detail"] == reason
    assert (await council.vote(session, a, app, "maybe")).status_code == 422
    assert (await council.vote(session, applicant, app, "approve")).status_code == 403
    not_chair = await council.close(session, a)
    assert not_chair.status_code == 409
    assert not_chair.json()["detail"] == "only the chair or an admin can do this"
    assert (await council.close(session)).status_code == 200
    late = await council.vote(session, a, app, "approve")
    assert late.status_code in (404, 409)  # the closed session's workflow may be gone


async def test_concurrent_approvals_never_overspend_and_the_loser_is_told_why(
    council: Council, applicant: User
) -> None:
    # Budget for one 30 M grant and 10 M more: two sessions race for it.
    a, b, c = await council.setup(budget_rub=40_000_000)
    first_app = await council.reviewed(applicant, 8)
    first = await council.session("Session A")
    second_app = await council.reviewed(applicant, 8)
    second = await council.session("Session B")
    for session, app in ((first, first_app), (second, second_app)):
        for member in (a, b, c):
            assert (await council.vote(session, member, app, "approve")).status_code == 200

    async def decide(session: dict[str, Any], app: dict[str, Any]) -> Any:
        return await council.stack.api.post(
            f"/v1/council-sessions/{session['session_id']}/decisions/{app['id']}",
            headers=council.admin.headers,
        )

    results = await asyncio.gather(decide(first, first_app), decide(second, second_app))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409)
    assert loser.json()["detail"] == (
        "the programme has 10 000 000 RUB left; approving 30 000 000 RUB would overspend it"
    )
    ledger = await council.ledger()
    assert ledger["reserved_rub"] == 30_000_000 and ledger["remaining_rub"] == 10_000_000
    assert ledger["balanced"]


async def approve(council: Council, applicant: User, **params: Any) -> dict[str, Any]:
    """An application approved for its full amount by all three members."""
    members = await council.setup(**params)
    app = await council.reviewed(applicant, 8, duration_months=24)
    session = await council.session()
    for member in members:
        await council.vote(session, member, app, "approve")
    assert (await council.close(session)).json()[0]["outcome"] == "approved"
    await reaches(council.stack, applicant, app["id"], "approved")
    return app


async def agreement(council: Council, user: User, app: dict[str, Any]) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        response = await council.stack.api.get(
            f"/v1/applications/{app['id']}/agreement", headers=user.headers
        )
        return response.json() if response.status_code == 200 else None

    state: dict[str, Any] = await eventually(found)
    return state


async def test_an_accepted_agreement_pays_a_tranche_and_holds_the_next_until_its_report(
    council: Council, applicant: User
) -> None:
    app = await approve(council, applicant, tranche_interval=2, report_interval=2)
    offered = await agreement(council, applicant, app)
    assert offered["status"] == "offered" and offered["amount_rub"] == 30_000_000
    assert [t["amount_rub"] for t in offered["tranches"]] == [15_000_000, 15_000_000]
    base = f"/v1/applications/{app['id']}"
    accepted = await council.stack.api.post(
        f"{base}/agreement/acceptance", headers=applicant.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["tranches"][0]["status"] == "released"
    assert accepted.json()["disbursed_rub"] == 15_000_000
    await reaches(council.stack, applicant, app["id"], "agreement")
    again = await council.stack.api.post(f"{base}/agreement/acceptance", headers=applicant.headers)
    assert again.status_code == 409 and again.json()["detail"] == "the agreement is accepted"

    async def held() -> dict[str, Any] | None:
        state = await agreement(council, applicant, app)
        return state if state["tranches"][1]["status"] == "held" else None

    state = await eventually(held)
    assert state["tranches"][1]["held_reason"] == "report 1 is not accepted yet"
    report = await council.stack.api.post(
        f"{base}/reports/1", json={"body": "Trained; two clinics."}, headers=applicant.headers
    )
    assert report.status_code == 200 and report.json()["status"] == "submitted"
    returned = await council.stack.api.post(
        f"/v1/admin/applications/{app['id']}/reports/1/decision",
        json={"accept": False, "comment": "Add the patient numbers."},
        headers=council.admin.headers,
    )
    assert returned.json()["status"] == "returned"
    await council.stack.api.post(
        f"{base}/reports/1", json={"body": "Trained; 412 patients."}, headers=applicant.headers
    )
    accepted_report = await council.stack.api.post(
        f"/v1/admin/applications/{app['id']}/reports/1/decision",
        json={"accept": True, "comment": "Good."},
        headers=council.admin.headers,
    )
    assert accepted_report.json()["status"] == "accepted"

    async def paid() -> dict[str, Any] | None:
        state = await agreement(council, applicant, app)
        return state if state["tranches"][1]["status"] == "released" else None

    await eventually(paid)
    ledger = await council.ledger()
    assert ledger["disbursed_rub"] == 30_000_000 and ledger["balanced"]


async def test_an_agreement_not_accepted_in_time_lapses_and_returns_the_money(
    council: Council, applicant: User
) -> None:
    app = await approve(council, applicant, agreement_window=2)
    assert (await council.ledger())["reserved_rub"] == 30_000_000
    lapsed = await reaches(council.stack, applicant, app["id"], "expired")
    assert lapsed["stage"] == "expired"
    state = await agreement(council, applicant, app)
    assert state["status"] == "lapsed"
    ledger = await council.ledger()
    assert ledger["reserved_rub"] == 0 and ledger["remaining_rub"] == ledger["budget_rub"]
    assert [e["kind"] for e in ledger["entries"]] == ["reserve", "release"]
    late = await council.stack.api.post(
        f"/v1/applications/{app['id']}/agreement/acceptance", headers=applicant.headers
    )
    assert late.status_code in (404, 409)


async def test_a_declined_agreement_withdraws_the_application_and_returns_the_money(
    council: Council, applicant: User, make_user: UserFactory
) -> None:
    app = await approve(council, applicant)
    base = f"/v1/applications/{app['id']}"
    await agreement(council, applicant, app)
    reason = {"reason": "Our partner clinic withdrew."}
    other = await make_user(Role.applicant)
    stranger = await council.stack.api.post(
        f"{base}/agreement/decline", json=reason, headers=other.headers
    )
    assert stranger.status_code == 404
    declined = await council.stack.api.post(
        f"{base}/agreement/decline", json=reason, headers=applicant.headers
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    assert [t["status"] for t in declined.json()["tranches"]] == ["cancelled", "cancelled"]
    withdrawn = await reaches(council.stack, applicant, app["id"], "withdrawn")
    assert withdrawn["stage"] == "withdrawn"
    ledger = await council.ledger()
    assert [(e["kind"], e["amount_rub"]) for e in ledger["entries"]] == [
        ("reserve", 30_000_000),
        ("release", 30_000_000),
    ]
    assert ledger["remaining_rub"] == ledger["budget_rub"] and ledger["balanced"]
    accept = await council.stack.api.post(f"{base}/agreement/acceptance", headers=applicant.headers)
    assert accept.status_code in (404, 409)


async def test_a_withdrawal_after_the_first_tranche_returns_only_the_unspent_money(
    council: Council, applicant: User
) -> None:
    app = await approve(council, applicant)
    base = f"/v1/applications/{app['id']}"
    await agreement(council, applicant, app)
    accepted = await council.stack.api.post(
        f"{base}/agreement/acceptance", headers=applicant.headers
    )
    assert accepted.json()["disbursed_rub"] == 15_000_000
    await reaches(council.stack, applicant, app["id"], "agreement")
    withdrawn = await council.stack.api.post(
        f"{base}/withdrawal",
        json={"reason": "The partner clinic closed."},
        headers=applicant.headers,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    await reaches(council.stack, applicant, app["id"], "withdrawn")

    async def released() -> dict[str, Any] | None:
        ledger = await council.ledger()
        return ledger if len(ledger["entries"]) == 3 else None

    ledger = await eventually(released)
    assert [(e["kind"], e["amount_rub"]) for e in ledger["entries"]] == [
        ("reserve", 30_000_000),
        ("disburse", 15_000_000),
        ("release", 15_000_000),
    ]
    assert ledger["remaining_rub"] == ledger["budget_rub"] - 15_000_000 and ledger["balanced"]

    # The release is written as the agreement winds down, its status a moment later.
    async def cancelled() -> dict[str, Any] | None:
        state: dict[str, Any] = await agreement(council, applicant, app)
        return state if state["status"] == "cancelled" else None

    assert await eventually(cancelled)


async def test_programme_figures_add_up(council: Council, applicant: User) -> None:
    app = await approve(council, applicant)
    response = await council.stack.api.get(
        f"/v1/programmes/{council.programme['id']}/figures", headers=council.admin.headers
    )
    assert response.status_code == 200, response.text
    figures = response.json()
    assert figures["applications"] == 1 and figures["approved"] == 1
    assert figures["approval_rate"] == 1.0
    assert figures["by_stage"] == {"approved": 1}
    assert figures["requested_rub"] == figures["approved_rub"] == figures["reserved_rub"]
    assert figures["remaining_rub"] == figures["budget_rub"] - 30_000_000
    assert figures["by_institution"][0]["institution_id"] == applicant.institution_id
    assert figures["by_institution"][0]["approved_rub"] == 30_000_000 and app["id"]
