"""Intake as an applicant lives it: submit, get screened, revise or not, withdraw."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.common import OrganisationType, Role
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    create_programme,
    eventually,
)

pytestmark = [SESSION, pytest.mark.system]


async def submit(stack: Stack, user: User, body: dict[str, Any], **headers: str) -> Any:
    return await stack.api.post("/v1/applications", json=body, headers={**user.headers, **headers})


async def stage_of(stack: Stack, user: User, application_id: str) -> str:
    response = await stack.api.get(f"/v1/applications/{application_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    stage: str = response.json()["stage"]
    return stage


async def timeline_kinds(stack: Stack, user: User, application_id: str) -> list[tuple[str, str]]:
    response = await stack.api.get(
        f"/v1/applications/{application_id}/timeline", headers=user.headers
    )
    assert response.status_code == 200, response.text
    return [(e["kind"], e["stage"]) for e in response.json()]


async def test_an_eligible_application_goes_to_review(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    response = await submit(stack, applicant, application_body(programme["id"]))
    assert response.status_code == 201, response.text
    app = response.json()
    assert app["stage"] == "under_review"
    assert app["findings"] == [] and app["action_required"] is None
    assert app["institution_id"] == applicant.institution_id
    assert await timeline_kinds(stack, applicant, app["id"]) == [
        ("submitted", "screening"),
        ("screened", "under_review"),
    ]
    mine = await stack.api.get("/v1/applications", headers=applicant.headers)
    assert [a["id"] for a in mine.json()["items"]] == [app["id"]]
    seen_by_admin = await stack.api.get(f"/v1/applications/{app['id']}", headers=admin.headers)
    assert seen_by_admin.json()["stage"] == "under_review"


@pytest.mark.parametrize(
    ("rule", "overrides", "applicant_type"),
    [
        ("specialty", {"specialty": "dermatology"}, OrganisationType.medical_institution),
        ("organisation_type", {}, OrganisationType.university),
    ],
)
async def test_an_ineligible_application_ends_with_its_reasons(
    stack: Stack,
    admin: User,
    make_user: UserFactory,
    rule: str,
    overrides: dict[str, Any],
    applicant_type: OrganisationType,
) -> None:
    programme = await create_programme(stack, admin)
    applicant = await make_user(
        Role.applicant,
        organisation_type=applicant_type,
        institution=f"Institution for {rule} {programme['id'][:6]}",
    )
    response = await submit(stack, applicant, application_body(programme["id"], **overrides))
    assert response.status_code == 201, response.text
    app = response.json()
    assert app["stage"] == "ineligible"
    assert [f["rule"] for f in app["findings"]] == [rule]
    assert app["findings"][0]["fixable"] is False
    timeline = await stack.api.get(
        f"/v1/applications/{app['id']}/timeline", headers=applicant.headers
    )
    assert timeline.json()[-1]["reason"] == app["findings"][0]["message"]


LINES_30M = [{"item": "Work", "category": "direct_costs", "year": 1, "amount_rub": 30_000_000}]

FIXABLE: dict[str, dict[str, Any]] = {
    "max_grant": {
        "requested_rub": 250_000_000,
        "total_investment_rub": 300_000_000,
        "budget_lines": [
            {"item": "Work", "category": "direct_costs", "year": 1, "amount_rub": 250_000_000}
        ],
    },
    "budget_lines": {"requested_rub": 31_000_000},
    "investment": {
        "requested_rub": 30_000_000,
        "total_investment_rub": 20_000_000,
        "budget_lines": LINES_30M,
    },
    "budget_years": {
        "duration_months": 12,
        "budget_lines": [
            {"item": "Work", "category": "direct_costs", "year": 2, "amount_rub": 30_000_000}
        ],
    },
    "complex_share": {
        "complex_project": True,
        "total_investment_rub": 100_000_000,
        "budget_lines": LINES_30M,
    },
    "complex_costs": {
        "complex_project": True,
        "budget_lines": [
            {"item": "Travel", "category": "other", "year": 1, "amount_rub": 30_000_000}
        ],
    },
}


@pytest.mark.parametrize("rule", sorted(FIXABLE))
async def test_a_fixable_gap_asks_the_applicant_for_a_revision(
    stack: Stack, admin: User, applicant: User, rule: str
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"], **FIXABLE[rule])
    if "requested_rub" not in FIXABLE[rule]:
        body["requested_rub"] = sum(line["amount_rub"] for line in body["budget_lines"])
    response = await submit(stack, applicant, body)
    assert response.status_code == 201, response.text
    app = response.json()
    assert app["stage"] == "revision_requested"
    assert [f["rule"] for f in app["findings"]] == [rule]
    assert app["action_required"].startswith("revise the application")
    deadline = datetime.fromisoformat(app["deadline"])
    assert (
        timedelta(hours=1)
        <= deadline - datetime.fromisoformat(app["submitted_at"])
        < timedelta(hours=1, minutes=1)
    )


async def test_the_complex_project_annual_cap(stack: Stack, admin: User, applicant: User) -> None:
    programme = await create_programme(
        stack, admin, max_grant_rub=900_000_000, complex_annual_cap_rub=20_000_000
    )
    body = application_body(programme["id"], complex_project=True)  # 18 M then 12 M a year
    assert (await submit(stack, applicant, body)).json()["stage"] == "under_review"
    body["budget_lines"][0]["amount_rub"] += 3_000_000
    body["requested_rub"] += 3_000_000
    app = (await submit(stack, applicant, body)).json()
    assert [f["rule"] for f in app["findings"]] == ["complex_annual_cap"]
    assert "year 1 asks 21 000 000 RUB" in app["findings"][0]["message"]


async def test_a_revision_in_time_is_screened_again(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"], requested_rub=31_000_000)
    app = (await submit(stack, applicant, body)).json()
    assert app["stage"] == "revision_requested"

    still_wrong = application_body(programme["id"], requested_rub=32_000_000)
    del still_wrong["programme_id"]
    again = await stack.api.post(
        f"/v1/applications/{app['id']}/revision", json=still_wrong, headers=applicant.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["stage"] == "revision_requested"

    fixed = application_body(programme["id"])
    del fixed["programme_id"]
    fixed["title"] = "AI triage, revised"
    revised = await stack.api.post(
        f"/v1/applications/{app['id']}/revision", json=fixed, headers=applicant.headers
    )
    assert revised.status_code == 200, revised.text
    assert revised.json()["stage"] == "under_review"
    assert revised.json()["content"]["title"] == "AI triage, revised"
    assert revised.json()["action_required"] is None and revised.json()["findings"] == []
    assert await timeline_kinds(stack, applicant, app["id"]) == [
        ("submitted", "screening"),
        ("screened", "revision_requested"),
        ("resubmitted", "screening"),
        ("screened", "revision_requested"),
        ("resubmitted", "screening"),
        ("screened", "under_review"),
    ]

    late = await stack.api.post(
        f"/v1/applications/{app['id']}/revision", json=fixed, headers=applicant.headers
    )
    assert late.status_code == 409
    assert "no revision is expected" in late.json()["detail"]


async def test_a_revision_is_refused_to_others_and_when_invalid(
    stack: Stack, admin: User, applicant: User, make_user: UserFactory
) -> None:
    programme = await create_programme(stack, admin)
    app = (
        await submit(stack, applicant, application_body(programme["id"], requested_rub=31_000_000))
    ).json()
    other = await make_user(Role.applicant)
    fixed = application_body(programme["id"])
    del fixed["programme_id"]
    url = f"/v1/applications/{app['id']}/revision"
    assert (await stack.api.post(url, json=fixed, headers=other.headers)).status_code == 404
    by_admin = await stack.api.post(url, json=fixed, headers=admin.headers)
    assert by_admin.status_code == 409
    assert by_admin.json()["detail"] == "only the applicant can revise this application"
    invalid = await stack.api.post(
        url, json={**fixed, "requested_rub": -1, "stage": "approved"}, headers=applicant.headers
    )
    assert invalid.status_code == 422
    assert {tuple(e["loc"]) for e in invalid.json()["detail"]} == {
        ("body", "requested_rub"),
        ("body", "stage"),
    }
    assert await stage_of(stack, applicant, app["id"]) == "revision_requested"


@pytest.mark.slow
async def test_no_revision_by_the_deadline_expires_the_application(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin, params={"revision_window": 1.5})
    app = (
        await submit(stack, applicant, application_body(programme["id"], requested_rub=31_000_000))
    ).json()
    assert app["stage"] == "revision_requested"

    async def expired() -> bool:
        return await stage_of(stack, applicant, app["id"]) == "expired"

    await eventually(expired, within=10)
    fixed = application_body(programme["id"])
    del fixed["programme_id"]
    too_late = await stack.api.post(
        f"/v1/applications/{app['id']}/revision", json=fixed, headers=applicant.headers
    )
    assert too_late.status_code == 409
    assert too_late.json()["detail"] == "the application is already expired"
    kinds = await timeline_kinds(stack, applicant, app["id"])
    assert kinds[-1] == ("revision_missed", "expired")


@pytest.mark.parametrize("fixable", [False, True])
async def test_the_applicant_withdraws_at_an_open_stage(
    stack: Stack, admin: User, applicant: User, fixable: bool
) -> None:
    programme = await create_programme(stack, admin)
    overrides = {"requested_rub": 31_000_000} if fixable else {}
    app = (await submit(stack, applicant, application_body(programme["id"], **overrides))).json()
    url = f"/v1/applications/{app['id']}/withdrawal"
    response = await stack.api.post(
        url, json={"reason": "we found another funder"}, headers=applicant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "withdrawn"
    again = await stack.api.post(url, json={"reason": "twice"}, headers=applicant.headers)
    assert again.status_code == 409
    timeline = (
        await stack.api.get(f"/v1/applications/{app['id']}/timeline", headers=applicant.headers)
    ).json()
    assert timeline[-1]["kind"] == "withdrawn"
    assert timeline[-1]["reason"] == "we found another funder"
    assert timeline[-1]["actor_name"] == applicant.name


async def test_an_admin_withdraws_on_the_applicants_behalf_but_another_applicant_cannot(
    stack: Stack, admin: User, applicant: User, make_user: UserFactory
) -> None:
    programme = await create_programme(stack, admin)
    app = (await submit(stack, applicant, application_body(programme["id"]))).json()
    url = f"/v1/applications/{app['id']}/withdrawal"
    other = await make_user(Role.applicant)
    assert (
        await stack.api.post(url, json={"reason": "x"}, headers=other.headers)
    ).status_code == 404
    assert (
        await stack.api.post(url, json={"reason": ""}, headers=admin.headers)
    ).status_code == 422
    response = await stack.api.post(
        url, json={"reason": "duplicate of another application"}, headers=admin.headers
    )
    assert response.json()["stage"] == "withdrawn"
    timeline = (
        await stack.api.get(f"/v1/applications/{app['id']}/timeline", headers=applicant.headers)
    ).json()
    assert (timeline[-1]["actor_role"], timeline[-1]["actor_name"]) == ("admin", admin.name)


@pytest.mark.slow
async def test_intake_closes_on_time_and_late_applications_are_refused(
    stack: Stack, admin: User, applicant: User
) -> None:
    closes = datetime.now(UTC) + timedelta(seconds=1.5)
    programme = await create_programme(stack, admin, intake_closes=closes.isoformat())
    in_time = await submit(stack, applicant, application_body(programme["id"]))
    assert in_time.status_code == 201

    async def closed() -> bool:
        response = await stack.api.get(
            f"/v1/programmes/{programme['id']}", headers=applicant.headers
        )
        return bool(response.json()["intake_state"] == "closed")

    await eventually(closed, within=10)
    late = await submit(stack, applicant, application_body(programme["id"]))
    assert late.status_code == 409
    assert "late applications are refused" in late.json()["detail"]
    mine = (
        await stack.api.get(
            f"/v1/applications?programme_id={programme['id']}", headers=applicant.headers
        )
    ).json()["items"]
    assert [a["id"] for a in mine] == [in_time.json()["id"]]


@pytest.mark.slow
async def test_intake_opens_on_time(stack: Stack, admin: User, applicant: User) -> None:
    opens = datetime.now(UTC) + timedelta(seconds=1.5)
    programme = await create_programme(stack, admin, intake_opens=opens.isoformat())
    assert programme["intake_state"] == "scheduled"
    early = await submit(stack, applicant, application_body(programme["id"]))
    assert early.status_code == 409 and "opens at" in early.json()["detail"]

    async def accepted() -> Any:
        response = await submit(stack, applicant, application_body(programme["id"]))
        return response.status_code == 201

    await eventually(accepted, within=10, interval=0.3)


async def test_concurrent_retries_with_one_idempotency_key_make_one_application(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"])
    responses = await asyncio.gather(
        *(submit(stack, applicant, body, **{"Idempotency-Key": "retry-me"}) for _ in range(20))
    )
    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    async with stack.pool.acquire() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM applications WHERE programme_id = $1::uuid", programme["id"]
        )
    assert rows == 1
    replay = await submit(stack, applicant, body, **{"Idempotency-Key": "retry-me"})
    assert replay.status_code == 200 and replay.json()["id"] == responses[0].json()["id"]
    changed = await submit(
        stack, applicant, {**body, "title": "Another project"}, **{"Idempotency-Key": "retry-me"}
    )
    assert changed.status_code == 422
    assert "different application" in changed.json()["detail"]


async def test_without_a_key_two_submissions_are_two_applications(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    first = await submit(stack, applicant, application_body(programme["id"]))
    second = await submit(stack, applicant, application_body(programme["id"]))
    assert first.json()["id"] != second.json()["id"]


async def test_another_applicants_application_is_not_found(
    stack: Stack, admin: User, applicant: User, make_user: UserFactory
) -> None:
    programme = await create_programme(stack, admin)
    app = (await submit(stack, applicant, application_body(programme["id"]))).json()
    other = await make_user(Role.applicant)
    for path in ("", "/timeline"):
        response = await stack.api.get(f"/v1/applications/{app['id']}{path}", headers=other.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "application not found"}
    listed = await stack.api.get("/v1/applications", headers=other.headers)
    assert listed.json()["items"] == []
    assert (
        await stack.api.get("/v1/applications/not-a-uuid", headers=applicant.headers)
    ).status_code == 404


async def test_bad_payloads_get_every_field_error(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(
        programme["id"], requested_rub="lots", duration_months=0, budget_lines=[], unknown_field=1
    )
    del body["title"]
    response = await submit(stack, applicant, body)
    assert response.status_code == 422
    assert {e["loc"][-1] for e in response.json()["detail"]} == {
        "title",
        "requested_rub",
        "duration_months",
        "budget_lines",
        "unknown_field",
    }
    missing = await submit(
        stack, applicant, application_body("5b0c3f8e-6f39-4b8e-9d59-6a3d2b7c1e10")
    )
    assert missing.status_code == 404 and missing.json()["detail"] == "programme not found"
    oversized = await stack.api.post(
        "/v1/applications",
        content=b"x" * 2_000_000,
        headers={**applicant.headers, "content-type": "application/json"},
    )
    assert oversized.status_code == 413
    async with stack.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM applications WHERE programme_id = $1::uuid", programme["id"]
            )
            == 0
        )


async def test_tokens_and_roles_are_checked(
    stack: Stack, admin: User, applicant: User, make_user: UserFactory
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"])
    assert (await stack.api.post("/v1/applications", json=body)).status_code == 401
    bad = await stack.api.post(
        "/v1/applications", json=body, headers={"Authorization": "Bearer gf_not-a-token"}
    )
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    basic = await stack.api.get("/v1/me", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401
    reviewer = await make_user(Role.reviewer, specialty="radiology")
    refused = await submit(stack, reviewer, body)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this needs the role applicant; you are reviewer"
    assert (
        await stack.api.post("/v1/programmes", json={}, headers=applicant.headers)
    ).status_code == 403
    assert (await stack.api.get("/v1/applications", headers=reviewer.headers)).status_code == 403
    me = await stack.api.get("/v1/me", headers=applicant.headers)
    assert me.json()["id"] == applicant.id and "token" not in me.text
