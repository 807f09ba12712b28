"""Admins find anything and intervene, through the API as they would: filters with counts,
keyset pages, Temporal's search attributes in step with Postgres, and every intervention
refused without a reason, refused to non-admins, and on record with the admin's name."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, application_body, eventually
from tests.test_agreement import agreement
from tests.test_cli import grantflow
from tests.test_council import Council, approve
from tests.test_pilot import Project
from tests.test_review import Competition, application, offered_to, reaches, task_for

pytestmark = [SESSION, pytest.mark.system]

FIND = "/v1/admin/applications"


@pytest.fixture
def competition(stack: Stack, admin: User, make_user: UserFactory) -> Competition:
    return Competition(stack, admin, make_user)


@pytest.fixture
def council(stack: Stack, admin: User, make_user: UserFactory) -> Council:
    return Council(stack, admin, make_user)


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def submit(competition: Competition, applicant: User, **overrides: Any) -> dict[str, Any]:
    """Submit without asserting the outcome (the Competition helper expects an eligible one)."""
    body = application_body(
        competition.programme["id"], **{"specialty": competition.specialty, **overrides}
    )
    response = await competition.stack.api.post(
        "/v1/applications", json=body, headers=applicant.headers
    )
    assert response.status_code == 201, response.text
    app: dict[str, Any] = response.json()
    return app


async def needing_revision(competition: Competition, applicant: User) -> dict[str, Any]:
    app = await submit(competition, applicant, requested_rub=31_000_000)  # lines add up to 30 M
    assert app["stage"] == "revision_requested", app
    return app


async def find(stack: Stack, admin: User, **params: Any) -> dict[str, Any]:
    response = await stack.api.get(FIND, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def every_page(stack: Stack, admin: User, **params: Any) -> list[str]:
    """The ids of every page in order, following the cursors."""
    ids: list[str] = []
    cursor = None
    while True:
        page = await find(stack, admin, **params, **({"cursor": cursor} if cursor else {}))
        ids += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def timeline(stack: Stack, user: User, application_id: str) -> list[dict[str, Any]]:
    response = await stack.api.get(
        f"/v1/applications/{application_id}/timeline", headers=user.headers
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


async def audited(
    stack: Stack, viewer: User, application_id: str, kind: str, admin: User, reason: str
) -> dict[str, Any]:
    """The timeline entry `kind`, which must carry the admin's name and the reason."""
    entries = [e for e in await timeline(stack, viewer, application_id) if e["kind"] == kind]
    assert entries, f"no {kind} in the timeline"
    assert entries[-1]["actor_name"] == admin.name
    assert entries[-1]["actor_role"] == "admin"
    assert reason in entries[-1]["reason"]
    return entries[-1]


# --- find ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_filters_and_counts_match_and_keyset_pages_cover_everything_once(
    competition: Competition, admin: User, make_user: UserFactory
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)  # no reviewer of this specialty: flagged
    north = await make_user(Role.applicant, institution=f"North {uuid.uuid4().hex[:6]}")
    south = await make_user(Role.applicant, institution=f"South {uuid.uuid4().hex[:6]}")
    in_review = [await submit(competition, north) for _ in range(3)]
    in_review += [await submit(competition, south) for _ in range(2)]
    revising = [await needing_revision(competition, south) for _ in range(2)]
    programme = competition.programme["id"]

    async def all_flagged() -> bool:
        page = await find(stack, admin, programme_id=programme, flagged="true")
        return bool(page["total"] == 5)

    await eventually(all_flagged)
    everything = await find(stack, admin, programme_id=programme)
    assert everything["total"] == 7
    assert everything["by_stage"] == {"under_review": 5, "revision_requested": 2}
    assert all(a["flag_reason"] for a in everything["items"] if a["stage"] == "under_review")

    by_stage = await find(stack, admin, programme_id=programme, stage="revision_requested")
    assert {a["id"] for a in by_stage["items"]} == {a["id"] for a in revising}
    assert by_stage["total"] == 2 and by_stage["by_stage"] == everything["by_stage"]
    both = await find(
        stack, admin, programme_id=programme, stage=["revision_requested", "under_review"]
    )
    assert both["total"] == 7

    souths = await find(stack, admin, institution_id=south.institution_id)
    assert souths["total"] == 4 and souths["by_stage"] == {
        "under_review": 2,
        "revision_requested": 2,
    }
    south_flagged = await find(
        stack, admin, institution_id=south.institution_id, flagged="true", stage="under_review"
    )
    assert {a["id"] for a in south_flagged["items"]} == {a["id"] for a in in_review[3:]}
    by_specialty = await find(stack, admin, specialty=competition.specialty)
    assert by_specialty["total"] == 7
    assert (await find(stack, admin, specialty="no-such-specialty"))["total"] == 0
    assert (await find(stack, admin, programme_id=programme, overdue="true"))["total"] == 0

    # Pages of 2, newest first: every application exactly once, in the order of one big page.
    paged = await every_page(stack, admin, programme_id=programme, limit=2)
    assert len(paged) == len(set(paged)) == 7
    assert paged == [a["id"] for a in everything["items"]]
    submitted = [a["submitted_at"] for a in everything["items"]]
    assert submitted == sorted(submitted, reverse=True)
    assert set(paged) == {a["id"] for a in in_review + revising}

    bad = await stack.api.get(FIND, params={"cursor": "nonsense"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_counts_stay_exact_through_every_stage_change(
    competition: Competition, admin: User, applicant: User
) -> None:
    """The counts without filters, or by programme, come from counters kept with each stage
    change: after submissions, a revision, a withdrawal and a cancellation they are what
    counting the table itself gives."""
    stack = competition.stack
    await competition.open(reviews_required=1)
    programme = competition.programme["id"]
    eligible = await submit(competition, applicant)
    revised, withdrawn, cancelled = [await needing_revision(competition, applicant) for _ in "abc"]
    fixed = application_body(programme, specialty=competition.specialty)
    fixed.pop("programme_id")
    response = await stack.api.post(
        f"/v1/applications/{revised['id']}/revision", json=fixed, headers=applicant.headers
    )
    assert response.status_code == 200 and response.json()["stage"] == "under_review"
    response = await stack.api.post(
        f"/v1/applications/{withdrawn['id']}/withdrawal",
        json={"reason": "not now"},
        headers=applicant.headers,
    )
    assert response.status_code == 200, response.text
    response = await stack.api.post(
        f"{FIND}/{cancelled['id']}/cancellation", json={"reason": "dup"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert eligible["stage"] == "under_review"
    mine = await find(stack, admin, programme_id=programme)
    assert mine["by_stage"] == {"under_review": 2, "withdrawn": 1, "cancelled": 1}
    assert mine["total"] == 4

    async def as_counted() -> bool:
        # Other tests' workflows may move meanwhile: compare until both reads agree.
        rows = await stack.pool.fetch(
            "SELECT stage, count(*)::int AS n FROM applications GROUP BY 1"
        )
        counted: dict[str, int] = {r["stage"]: r["n"] for r in rows}
        page = await find(stack, admin)
        return bool(page["by_stage"] == counted and page["total"] == sum(counted.values()))

    assert await eventually(as_counted)


@pytest.mark.slow
async def test_the_cli_lists_with_the_same_filters(
    competition: Competition, admin: User, applicant: User, tmp_path: Path
) -> None:
    await competition.open(reviews_required=1)
    revising = await needing_revision(competition, applicant)
    await submit(competition, applicant)
    run = await grantflow(
        competition.stack,
        tmp_path,
        "applications",
        "list",
        "--programme",
        competition.programme["id"],
        "--stage",
        "revision_requested",
        "--json",
    )
    assert run.code == 0, run.err
    page = json.loads(run.out)
    assert [a["id"] for a in page["items"]] == [revising["id"]]
    assert page["total"] == 1
    assert page["by_stage"] == {"revision_requested": 1, "under_review": 1}
    table = await grantflow(
        competition.stack,
        tmp_path,
        "applications",
        "list",
        "--programme",
        competition.programme["id"],
    )
    assert table.code == 0, table.err
    assert revising["id"][:8] in table.out and "2 match" in table.out


async def test_temporal_search_attributes_agree_with_the_api(
    council: Council, applicant: User
) -> None:
    """For several stages, `temporal workflow list --query "Stage='…'"` and the API list the
    same applications (visibility is eventually consistent: polled, bounded)."""
    stack, admin = council.stack, council.admin
    members = await council.setup()
    on_agenda = await council.reviewed(applicant, 8)
    await council.session()
    await reaches(stack, applicant, on_agenda["id"], "in_council")
    revising = await needing_revision(council, applicant)
    withdrawn = await submit(council, applicant)
    response = await stack.api.post(
        f"/v1/applications/{withdrawn['id']}/withdrawal",
        json={"reason": "changed our plans"},
        headers=applicant.headers,
    )
    assert response.status_code == 200, response.text
    cancelled = await needing_revision(council, applicant)
    response = await stack.api.post(
        f"{FIND}/{cancelled['id']}/cancellation",
        json={"reason": "duplicate"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    programme = council.programme["id"]
    assert members  # the council exists to put one application in council

    for stage, expected in (
        ("in_council", on_agenda),
        ("revision_requested", revising),
        ("withdrawn", withdrawn),
        ("cancelled", cancelled),
    ):
        api_ids = set(await every_page(stack, admin, programme_id=programme, stage=stage))
        assert api_ids == {expected["id"]}

        async def agree(stage: str = stage, api_ids: set[str] = api_ids) -> bool:
            query = f"ProgrammeId = '{programme}' AND Stage = '{stage}'"
            listed = {
                w.id.removeprefix("application-")
                async for w in stack.client.list_workflows(query)
                if w.id.startswith("application-")
            }
            return listed == api_ids

        assert await eventually(agree, within=20, interval=0.5)


async def test_temporal_stage_follows_postgres_from_the_first_moment(
    competition: Competition, applicant: User
) -> None:
    """Every stage the application's timeline shows, Temporal's `Stage` took too, in the same
    order: `screening` as soon as the application is on record, not `submitted` until the
    screening's outcome."""
    stack = competition.stack
    await competition.open()
    app = await needing_revision(competition, applicant)
    stages = [e["stage"] for e in await timeline(stack, applicant, app["id"]) if e["stage"]]
    assert stages == ["screening", "revision_requested"]
    history = await stack.client.get_workflow_handle(f"application-{app['id']}").fetch_history()
    upserts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    upserted = [json.loads(fields["Stage"].data) for fields in upserts if "Stage" in fields]
    assert upserted == stages


# --- intervene -------------------------------------------------------------------------------


async def test_withdraw_on_the_applicants_behalf_is_audited_with_the_admins_name(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    app = await submit(competition, applicant)
    response = await stack.api.post(
        f"/v1/applications/{app['id']}/withdrawal",
        json={"reason": "The applicant asked by phone."},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert (await application(stack, applicant, app["id"]))["stage"] == "withdrawn"
    await audited(stack, applicant, app["id"], "withdrawn", admin, "asked by phone")


async def test_revision_deadline_moves_and_rescreening_runs_again(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    app = await needing_revision(competition, applicant)
    path = f"{FIND}/{app['id']}/deadlines"
    early = await stack.api.post(
        path,
        json={"kind": "revision", "until": later(60), "reason": "too early"},
        headers=admin.headers,
    )
    assert early.status_code == 409 and "later than the current one" in early.json()["detail"]
    until = later(7200)
    moved = await stack.api.post(
        path,
        json={"kind": "revision", "until": until, "reason": "Lab results are late."},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text
    seen = await application(stack, applicant, app["id"])
    assert seen["stage"] == "revision_requested"
    assert datetime.fromisoformat(seen["deadline"]) == datetime.fromisoformat(until)
    await audited(stack, applicant, app["id"], "revision_deadline_extended", admin, "Lab results")

    rescreened = await stack.api.post(
        f"{FIND}/{app['id']}/screening",
        json={"reason": "The programme's limits were corrected."},
        headers=admin.headers,
    )
    assert rescreened.status_code == 200, rescreened.text
    after = rescreened.json()
    # Nothing changed in the programme: the same finding, and a fresh revision window.
    assert after["stage"] == "revision_requested"
    assert [f["rule"] for f in after["findings"]] == [f["rule"] for f in app["findings"]]
    await audited(stack, admin, app["id"], "rescreened", admin, "limits were corrected")
    # The applicant can still revise: the workflow is waiting for it, not stuck.
    fixed = application_body(competition.programme["id"], specialty=competition.specialty)
    fixed.pop("programme_id")
    revised = await stack.api.post(
        f"/v1/applications/{app['id']}/revision", json=fixed, headers=applicant.headers
    )
    assert revised.status_code == 200, revised.text
    assert revised.json()["stage"] == "under_review"
    no_agreement = await stack.api.post(
        path,
        json={"kind": "agreement", "until": later(7200), "reason": "x"},
        headers=admin.headers,
    )
    assert no_agreement.status_code == 409
    assert no_agreement.json()["detail"] == "the application has no agreement: it is under_review"
    again = await stack.api.post(
        f"{FIND}/{app['id']}/screening", json={"reason": "again"}, headers=admin.headers
    )
    assert again.status_code == 409 and "under_review" in again.json()["detail"]


async def test_a_review_is_reassigned_to_a_named_reviewer_or_the_next_eligible(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    first = await competition.reviewer()
    app = await competition.submit(applicant)
    task = await task_for(stack, first, app["id"])
    named = await competition.reviewer()
    conflicted = await competition.reviewer(institution=applicant.institution_id)
    refused = await stack.api.post(
        f"/v1/admin/reviews/{task['task_id']}/reassignment",
        json={"reviewer_id": conflicted.id, "reason": "try"},
        headers=admin.headers,
    )
    assert refused.status_code == 409, refused.text
    moved = await stack.api.post(
        f"/v1/admin/reviews/{task['task_id']}/reassignment",
        json={"reviewer_id": named.id, "reason": "First reviewer is on leave."},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text
    assert sorted((t["reviewer_id"], t["status"]) for t in moved.json()["tasks"]) == sorted(
        [(first.id, "cancelled"), (named.id, "offered")]
    )
    inbox = await stack.api.get("/v1/reviews", headers=first.headers)
    assert all(t["application_id"] != app["id"] for t in inbox.json()["items"])
    second = await task_for(stack, named, app["id"])
    await audited(stack, admin, app["id"], "review_reassigned", admin, "on leave")

    # Without a name, the usual matching picks the next eligible expert.
    spare = await competition.reviewer()
    auto = await stack.api.post(
        f"/v1/admin/reviews/{second['task_id']}/reassignment",
        json={"reason": "Too slow."},
        headers=admin.headers,
    )
    assert auto.status_code == 200, auto.text

    async def offered_to_spare() -> bool:
        return (spare.id, "offered") in await offered_to(stack, admin, app["id"])

    assert await eventually(offered_to_spare)
    # And through the one deadline endpoint, the new task's deadline moves.
    task3 = await task_for(stack, spare, app["id"])
    until = later(9000)
    moved_deadline = await stack.api.post(
        f"{FIND}/{app['id']}/deadlines",
        json={"kind": "review", "task_id": task3["task_id"], "until": until, "reason": "Holiday."},
        headers=admin.headers,
    )
    assert moved_deadline.status_code == 200, moved_deadline.text
    task3 = await task_for(stack, spare, app["id"])
    assert datetime.fromisoformat(task3["deadline"]) == datetime.fromisoformat(until)
    await audited(stack, admin, app["id"], "review_deadline_extended", admin, "Holiday.")


async def test_cancelling_in_review_closes_the_reviewers_tasks(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=2)
    reviewers = [await competition.reviewer() for _ in range(2)]
    app = await competition.submit(applicant)
    for reviewer in reviewers:
        await task_for(stack, reviewer, app["id"])
    cancelled = await stack.api.post(
        f"{FIND}/{app['id']}/cancellation",
        json={"reason": "Submitted twice by mistake."},
        headers=admin.headers,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["stage"] == "cancelled"
    assert {s for _, s in await offered_to(stack, admin, app["id"])} == {"cancelled"}
    for reviewer in reviewers:
        inbox = await stack.api.get("/v1/reviews", headers=reviewer.headers)
        assert all(t["application_id"] != app["id"] for t in inbox.json()["items"])
    await audited(stack, applicant, app["id"], "cancelled", admin, "twice by mistake")
    found = await find(stack, admin, programme_id=competition.programme["id"])
    assert found["by_stage"] == {"cancelled": 1}


@pytest.mark.slow
async def test_agreement_window_extended_then_cancelled_returns_the_money(
    council: Council, applicant: User
) -> None:
    stack, admin = council.stack, council.admin
    app = await approve(council, applicant, agreement_window=3600)
    state = await agreement(council, applicant, app)
    assert state["status"] == "offered"
    reserved = await council.ledger()
    until = later(7 * 86400)
    moved = await stack.api.post(
        f"{FIND}/{app['id']}/deadlines",
        json={"kind": "agreement", "until": until, "reason": "Their director is away."},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text

    async def moved_everywhere() -> bool:
        state = await agreement(council, applicant, app)
        seen = await application(stack, applicant, app["id"])
        return datetime.fromisoformat(state["accept_by"]) == datetime.fromisoformat(
            until
        ) and datetime.fromisoformat(seen["deadline"]) == datetime.fromisoformat(until)

    assert await eventually(moved_everywhere)
    await audited(stack, applicant, app["id"], "agreement_deadline_extended", admin, "away")

    cancelled = await stack.api.post(
        f"{FIND}/{app['id']}/cancellation",
        json={"reason": "The company was dissolved."},
        headers=admin.headers,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["stage"] == "cancelled"
    # The money is back in the budget when the cancellation returns.
    ledger = await council.ledger()
    assert ledger["balanced"] is True
    assert ledger["remaining_rub"] - reserved["remaining_rub"] == 30_000_000
    assert (await agreement(council, applicant, app))["status"] == "cancelled"
    await audited(stack, applicant, app["id"], "cancelled", admin, "dissolved")
    releases = [e for e in ledger["entries"] if e["application_id"] == app["id"]]
    assert [e["kind"] for e in releases] == ["reserve", "release"]
    assert releases[1]["reason"] == (
        f"the application was cancelled by an admin ({admin.name}): The company was dissolved."
    )
    twice = await stack.api.post(
        f"{FIND}/{app['id']}/cancellation", json={"reason": "again"}, headers=admin.headers
    )
    assert twice.status_code == 409


@pytest.mark.slow
async def test_an_overdue_report_is_found_and_its_deadline_extended(
    council: Council, applicant: User
) -> None:
    stack, admin = council.stack, council.admin
    project = await Project.accepted(
        # 60 reports in all: a report a second over two one-hour years would be 7,200.
        council,
        applicant,
        tranche_interval=30,
        report_interval=1,
        reminder_lead_time=0.5,
    )
    app_id, programme = project.app["id"], council.programme["id"]

    async def overdue_found() -> bool:
        page = await find(stack, admin, programme_id=programme, overdue="true")
        return [a["id"] for a in page["items"]] == [app_id] and page["items"][0]["overdue"]

    assert await eventually(overdue_found)
    until = later(86400)
    moved = await stack.api.post(
        f"{FIND}/{app_id}/deadlines",
        json={"kind": "report", "seq": 1, "until": until, "reason": "Data arrives late."},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text
    report = (await agreement(council, applicant, project.app))["reports"][0]
    assert datetime.fromisoformat(report["due_at"]) == datetime.fromisoformat(until)
    assert report["overdue"] is False and report["status"] == "due"
    await audited(stack, applicant, app_id, "report_deadline_extended", admin, "Data arrives")
    # Report 2 falls due a second later and is overdue in its turn: the filter follows it.
    await eventually(overdue_found)
    no_seq = await stack.api.post(
        f"{FIND}/{app_id}/deadlines",
        json={"kind": "report", "until": until, "reason": "x"},
        headers=admin.headers,
    )
    assert no_seq.status_code == 422


@pytest.mark.slow
async def test_a_corrected_programme_rescreens_by_the_new_rule(
    competition: Competition, admin: User, applicant: User
) -> None:
    """The cap was entered as 20 M instead of 200 M: an application asking 30 M was sent back.
    After intake closed an admin corrects the cap; re-screening then finds nothing."""
    stack = competition.stack
    await competition.open(programme={"max_grant_rub": 20_000_000, "intake_closes": later(8)})
    programme = competition.programme["id"]
    app = await submit(competition, applicant)
    assert app["stage"] == "revision_requested"
    assert [f["rule"] for f in app["findings"]] == ["max_grant"]
    ineligible = await submit(competition, applicant, specialty="dermatology")
    assert ineligible["stage"] == "ineligible"

    async def closed() -> bool:
        response = await stack.api.get(f"/v1/programmes/{programme}", headers=admin.headers)
        return bool(response.json()["intake_state"] == "closed")

    assert await eventually(closed, within=30)
    url = f"/v1/admin/programmes/{programme}/corrections"
    for refused in ({"max_grant_rub": 200_000_000}, {"max_grant_rub": 1, "reason": "  "}):
        assert (await stack.api.post(url, json=refused, headers=admin.headers)).status_code == 422
    nothing = await stack.api.post(url, json={"reason": "why not"}, headers=admin.headers)
    assert nothing.status_code == 422 and "nothing to correct" in nothing.text
    too_much = {"max_grant_rub": 3_000_000_000, "reason": "over the budget"}
    over = await stack.api.post(url, json=too_much, headers=admin.headers)
    assert over.status_code == 409 and "max_grant_rub cannot exceed" in over.json()["detail"]
    fix = {"max_grant_rub": 200_000_000, "reason": "The cap was entered as 20 M, not 200 M."}
    assert (await stack.api.post(url, json=fix, headers=applicant.headers)).status_code == 403
    corrected = await stack.api.post(url, json=fix, headers=admin.headers)
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["max_grant_rub"] == 200_000_000

    rescreened = await stack.api.post(
        f"{FIND}/{app['id']}/screening",
        json={"reason": "The cap was corrected."},
        headers=admin.headers,
    )
    assert rescreened.status_code == 200, rescreened.text
    assert rescreened.json()["stage"] == "under_review"
    assert rescreened.json()["findings"] == []
    assert (await application(stack, applicant, app["id"]))["stage"] == "under_review"
    await audited(stack, applicant, app["id"], "rescreened", admin, "cap was corrected")

    # A second correction, on the again-ended workflow. The ineligible application has ended:
    # it is not re-screened (admins see it in the list and can tell the applicant to reapply).
    more = {"specialties": [competition.specialty, "dermatology"], "reason": "Dermatology too."}
    assert (await stack.api.post(url, json=more, headers=admin.headers)).status_code == 200
    ended = await stack.api.post(
        f"{FIND}/{ineligible['id']}/screening", json={"reason": "x"}, headers=admin.headers
    )
    assert ended.status_code == 409 and "ineligible" in ended.json()["detail"]
    history = await stack.api.get(url, headers=admin.headers)
    assert history.status_code == 200
    assert [(c["actor_name"], c["reason"], c["changed"]) for c in history.json()] == [
        (admin.name, fix["reason"], {"max_grant_rub": [20_000_000, 200_000_000]}),
        (
            admin.name,
            more["reason"],
            {"specialties": [[competition.specialty], more["specialties"]]},
        ),
    ]
    assert (await stack.api.get(url, headers=applicant.headers)).status_code == 403


# --- refusals ------------------------------------------------------------------------------

INTERVENTIONS = [
    ("deadlines", {"kind": "revision", "until": "2030-01-01T00:00:00Z"}),
    ("screening", {}),
    ("cancellation", {}),
]


async def test_every_intervention_needs_a_reason_and_an_admin(
    competition: Competition, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    reviewer = await competition.reviewer()
    app = await competition.submit(applicant)
    task = await task_for(stack, reviewer, app["id"])
    calls = [(f"{FIND}/{app['id']}/{path}", body) for path, body in INTERVENTIONS]
    calls += [
        (f"/v1/admin/reviews/{task['task_id']}/reassignment", {}),
        (f"/v1/admin/reviews/{task['task_id']}/deadline", {"until": "2030-01-01T00:00:00Z"}),
        (f"{FIND}/{app['id']}/reviewers", {"reviewer_id": reviewer.id}),
    ]
    for url, body in calls:
        for missing in (body, {**body, "reason": ""}, {**body, "reason": "   "}):
            response = await stack.api.post(url, json=missing, headers=admin.headers)
            assert response.status_code == 422, (url, response.text)
    others = [applicant, reviewer, await make_user(Role.council)]
    for user in others:
        for url, body in calls:
            response = await stack.api.post(
                url, json={**body, "reason": "because"}, headers=user.headers
            )
            assert response.status_code == 403, (url, user.role, response.text)
        for listing in (FIND, f"{FIND}/flagged", f"{FIND}/{app['id']}/reviews"):
            assert (await stack.api.get(listing, headers=user.headers)).status_code == 403
        exported = await stack.api.get(
            f"/v1/admin/programmes/{competition.programme['id']}/export/applications",
            headers=user.headers,
        )
        assert exported.status_code == 403
    assert (await stack.api.get(FIND)).status_code == 401
    # Nothing happened: the application is where it was and the audit has no admin event.
    assert (await application(stack, applicant, app["id"]))["stage"] == "under_review"
    by_admins = [e for e in await timeline(stack, admin, app["id"]) if e["actor_role"] == "admin"]
    assert by_admins == []


async def test_a_deadline_move_names_what_its_kind_needs_and_nothing_else(
    competition: Competition, admin: User, applicant: User
) -> None:
    stack = competition.stack
    await competition.open(reviews_required=1)
    reviewer = await competition.reviewer()
    app, other = await competition.submit(applicant), await competition.submit(applicant)
    others_task = await task_for(stack, reviewer, other["id"])
    refusals = [
        ({"kind": "review"}, 422, "task_id is required"),
        ({"kind": "review", "task_id": others_task["task_id"]}, 404, "no such task on this"),
        ({"kind": "review", "task_id": str(uuid.uuid4())}, 404, "review task not found"),
        ({"kind": "report"}, 422, "seq is required for a report"),
        ({"kind": "agreement", "seq": 1}, 422, "seq is required for a report"),
        ({"kind": "report", "seq": 1}, 409, "no agreement: it is under_review"),
    ]
    for body, status, reason in refusals:
        response = await stack.api.post(
            f"{FIND}/{app['id']}/deadlines",
            json={**body, "until": later(7200), "reason": "Holiday."},
            headers=admin.headers,
        )
        assert response.status_code == status, (body, response.text)
        assert reason in response.json()["detail"], (body, response.text)
    # The other application's task kept its deadline, and no admin event is on record.
    assert (await task_for(stack, reviewer, other["id"]))["deadline"] == others_task["deadline"]
    for application_id in (app["id"], other["id"]):
        events = await timeline(stack, admin, application_id)
        assert [e for e in events if e["actor_role"] == "admin"] == []
