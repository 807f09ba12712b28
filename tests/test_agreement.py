"""The agreement as an approved applicant and the admins live it: accepting it pays the first
tranche and the next waits for its report; an agreement not accepted in time lapses; a
withdrawal returns the money not yet paid."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, eventually
from tests.test_council import Council, approve
from tests.test_review import reaches

pytestmark = [SESSION, pytest.mark.system]


@pytest.fixture
def council(stack: Stack, admin: User, make_user: UserFactory) -> Council:
    return Council(stack, admin, make_user)


async def agreement(council: Council, user: User, app: dict[str, Any]) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        response = await council.stack.api.get(
            f"/v1/applications/{app['id']}/agreement", headers=user.headers
        )
        return response.json() if response.status_code == 200 else None

    state: dict[str, Any] = await eventually(found)
    return state


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
