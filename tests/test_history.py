"""Admins inspect any application: what happened to it (its audit trail and its workflows'
events, in plain words, in order, with the acting users) and what it is waiting for at every
stage, through the HTTP API and the `grantflow history` command."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.services.context import Resources
from grantflow.services.waiting import ended_stage
from schemas.common import Role, Stage
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    eventually,
    programme_body,
)
from tests.test_agreement import agreement
from tests.test_cli import grantflow
from tests.test_council import Council
from tests.test_pilot import Project
from tests.test_review import act, reaches, task_for
from workers.main import build_worker
from workflows import ids

pytestmark = [SESSION, pytest.mark.system]
UI = "http://temporal-ui.test:8080"


class FailOnce(Interceptor):
    """Test-only fault: the first attempt of an armed activity in an armed workflow raises, as
    a dropped database connection would; Temporal retries it."""

    def __init__(self) -> None:
        self.armed: set[tuple[str, str]] = set()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _FailFirstAttempt(next, self)


class _FailFirstAttempt(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, faults: FailOnce) -> None:
        super().__init__(next)
        self._faults = faults

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        key = (info.activity_type, info.workflow_id or "")
        if info.attempt == 1 and key in self._faults.armed:
            self._faults.armed.discard(key)
            raise ConnectionResetError("connection reset")
        return await super().execute_activity(input)


@dataclass
class Inspecting:
    stack: Stack
    faults: FailOnce


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def inspecting(stack: Stack) -> AsyncIterator[Inspecting]:
    """The session's servers with a worker of this module's own (on its own task queue) that
    carries the fault interceptor, and an API whose Web UI address is set."""
    settings = stack.settings.model_copy(
        update={"task_queue": f"tq-{uuid.uuid4()}", "temporal_ui_url": UI}
    )
    worker_pool = await create_pool(stack.database_url, min_size=1, max_size=10)
    faults = FailOnce()
    worker = build_worker(
        stack.client, worker_pool, settings.task_queue, sender=stack.sender, interceptors=[faults]
    )
    app = create_app(settings, Resources(settings, stack.pool, stack.client))
    try:
        async with (
            worker,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://grantflow.test"
            ) as api,
        ):
            yield Inspecting(replace(stack, settings=settings, api=api), faults)
    finally:
        await worker_pool.close()


async def waiting(stack: Stack, admin: User, app_id: str) -> dict[str, Any]:
    url = f"/v1/admin/applications/{app_id}/waiting"
    response = await stack.api.get(url, headers=admin.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def waits_for(
    stack: Stack, admin: User, app_id: str, stage: str, what: str
) -> list[dict[str, Any]]:
    """The waiting-for answer once the application is in `stage` and some party must `what`."""

    async def check() -> list[dict[str, Any]] | None:
        found = await waiting(stack, admin, app_id)
        items: list[dict[str, Any]] = found["waiting"]
        ok = found["stage"] == stage and any(w["what"].startswith(what) for w in items)
        return items if ok else None

    items: list[dict[str, Any]] = await eventually(check, within=20)
    return items


def one(items: list[dict[str, Any]], what: str) -> dict[str, Any]:
    [found] = [w for w in items if w["what"].startswith(what)]
    return found


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def history(stack: Stack, admin: User, app_id: str) -> dict[str, Any]:
    url = f"/v1/admin/applications/{app_id}/history"
    response = await stack.api.get(url, headers=admin.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def in_order(entries: list[dict[str, Any]], expected: list[tuple[str, str]]) -> None:
    """Each (source, text) of `expected` is found, in this order, among the entries."""
    position = 0
    for source, text in expected:
        for i in range(position, len(entries)):
            if entries[i]["source"] == source and text in entries[i]["text"]:
                position = i + 1
                break
        else:
            lines = "\n".join(f"{e['source']}: {e['text']}" for e in entries)
            raise AssertionError(f"{source} {text!r} not found after entry {position}:\n{lines}")


def find(entries: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The entries whose line starts with `text`."""
    return [e for e in entries if e["text"].startswith(text)]


@pytest.mark.slow
async def test_a_revised_reassigned_retried_and_approved_application_reads_in_order(
    inspecting: Inspecting, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = inspecting.stack
    council = Council(stack, admin, make_user)
    members = await council.setup()

    # Screening sends it back: the applicant must revise by the deadline, or it expires.
    body = application_body(
        council.programme["id"], specialty=council.specialty, requested_rub=31_000_000
    )
    created = await stack.api.post("/v1/applications", json=body, headers=applicant.headers)
    assert created.status_code == 201, created.text
    app_id = created.json()["id"]
    items = await waits_for(stack, admin, app_id, "revision_requested", "revise the application")
    assert items == [
        {
            "workflow_id": f"application-{app_id}",
            "who": "applicant",
            "user_ids": [applicant.id],
            "what": items[0]["what"],
            "by": items[0]["by"],
            "otherwise": "the application expires",
            "application_id": None,
        }
    ]
    assert at(items[0]["by"]) == at(created.json()["deadline"])
    fixed = application_body(council.programme["id"], specialty=council.specialty)
    del fixed["programme_id"]
    revised = await stack.api.post(
        f"/v1/applications/{app_id}/revision", json=fixed, headers=applicant.headers
    )
    assert revised.json()["stage"] == "under_review", revised.text

    # Review: the first expert must accept or decline; a declined task goes to another expert.
    first = await council._offered_reviewer(app_id)
    task = await task_for(stack, first, app_id)
    first_task_id = task["task_id"]
    offer = one(await waits_for(stack, admin, app_id, "under_review", "accept or decline"), "acc")
    assert (offer["who"], offer["user_ids"]) == (f"reviewer {first.name}", [first.id])
    assert at(offer["by"]) == at(task["deadline"])
    assert offer["otherwise"].endswith("the application is offered to another expert")
    declined = await act(
        stack, first, task["task_id"], "decline", {"reason": "I advise the applicant."}
    )
    assert declined.status_code == 200, declined.text
    second = await eventually(lambda: _offered_to_another(council, app_id, first))
    offer = one(await waits_for(stack, admin, app_id, "under_review", "accept or decline"), "acc")
    assert offer["user_ids"] == [second.id]
    task = await task_for(stack, second, app_id)
    assert (await act(stack, second, task["task_id"], "acceptance")).status_code == 200
    due = one(await waits_for(stack, admin, app_id, "under_review", "submit the review"), "sub")
    assert due["who"] == f"reviewer {second.name}" and due["by"] is not None
    scores = {"clinical_value": 8, "novelty": 8, "feasibility": 8}
    review = {"scores": scores, "recommendation": "fund", "comments": "Sound."}
    assert (await act(stack, second, task["task_id"], "review", review)).status_code == 200
    await reaches(stack, applicant, app_id, "reviewed")
    [council_next] = await waits_for(stack, admin, app_id, "reviewed", "decide on the application")
    assert council_next["who"] == "council"

    # Council: the members who have not voted yet, and the chair who closes the session.
    session = await council.session()
    sid = session["session_id"]
    items = await waits_for(stack, admin, app_id, "in_council", "vote on")
    assert sorted(one(items, "vote on")["user_ids"]) == sorted(m.id for m in members)
    assert one(items, "decide 'AI triage")["user_ids"] == [session["chair_id"]]
    for member in members[:2]:
        assert (await council.vote(session, member, {"id": app_id}, "approve")).status_code == 200
    vote = one(await waits_for(stack, admin, app_id, "in_council", "vote on"), "vote on")
    assert vote["user_ids"] == [members[2].id] and members[2].name in vote["who"]
    assert (await council.vote(session, members[2], {"id": app_id}, "approve")).status_code == 200
    inspecting.faults.armed.add(("record_decision", f"council-{sid}"))
    closed = await council.close(session)
    assert closed.status_code == 200, closed.text
    assert not inspecting.faults.armed, "the decision was never attempted"

    # Approved: the applicant must accept the agreement in time, or the approval lapses.
    items = await waits_for(stack, admin, app_id, "approved", "accept or decline the agreement")
    offer = one(items, "accept or decline the agreement")
    assert (offer["who"], offer["user_ids"]) == (f"applicant {applicant.name}", [applicant.id])
    assert offer["otherwise"] == "the approval lapses and its money returns to the budget"
    offered = await agreement(council, applicant, {"id": app_id})
    assert at(offer["by"]) == at(offered["accept_by"])

    found = await history(stack, admin, app_id)
    entries = found["entries"]
    times = [at(e["at"]) for e in entries]
    assert times == sorted(times)
    assert found["stage"] == "approved" and found["waiting"] == items
    # The order users read: each action, then what it recorded, then the write that did it
    # (a local activity, in the same workflow task).
    in_order(
        entries,
        [
            ("temporal", "workflow Application started"),
            ("temporal", "Update registered accepted"),
            ("audit", "screened (stage revision_requested)"),
            ("temporal", "activity record_stage_change completed"),
            ("temporal", f"Update revise accepted from applicant {applicant.name} ({applicant.id}"),
            ("audit", f"resubmitted (stage screening) by applicant {applicant.name}"),
            ("audit", "screened (stage under_review)"),
            ("temporal", "activity record_stage_change completed"),
            ("temporal", f"child workflow Review started: review-{app_id}"),
            ("audit", f"review offered (stage under_review) [task_id={first_task_id}"),
            ("temporal", "activity offer_task completed"),
            ("temporal", f"Update decline accepted from reviewer {first.name}"),
            ("audit", f"review declined (stage under_review) by reviewer {first.name}"),
            ("audit", f"review offered (stage under_review): {first.name} declined"),
            ("temporal", "activity record_change completed"),
            ("temporal", "activity offer_task completed"),
            ("temporal", f"Update accept accepted from reviewer {second.name}"),
            ("audit", f"review accepted (stage under_review) by reviewer {second.name}"),
            ("temporal", "activity record_change completed"),
            ("temporal", f"Update submit accepted from reviewer {second.name}"),
            ("audit", f"review submitted (stage under_review) by reviewer {second.name}"),
            ("temporal", "activity record_change completed"),
            ("temporal", "workflow Review completed"),
            ("audit", "reviewed (stage reviewed)"),
            ("temporal", f"signal enter_council received from council-{sid}"),
            ("audit", "on agenda (stage in_council)"),
            ("temporal", "activity record_stage_change completed"),
            *[
                line
                for m in members
                for line in (
                    ("temporal", f"Update vote accepted from council {m.name}"),
                    ("audit", f"council vote by council {m.name}: approve"),
                    ("temporal", "activity record_vote completed"),
                )
            ],
            ("audit", "council approved: approved 3 of 3"),
            ("temporal", "activity reserve completed"),
            ("temporal", "activity record_decision retried 1 time (a local activity's failed"),
            ("temporal", f"signal council_decision sent to application-{app_id}"),
            ("temporal", f"signal council_decision received from council-{sid}"),
            ("audit", "council approved (stage approved)"),
            ("temporal", "activity record_stage_change completed"),
            ("temporal", f"child workflow Agreement started: agreement-{app_id}"),
        ],
    )
    # Each user's action is followed at once by what it recorded, by the same user.
    for update, recorded in [
        (f"Update revise accepted from applicant {applicant.name}", "resubmitted"),
        (f"Update decline accepted from reviewer {first.name}", "review declined"),
        (f"Update accept accepted from reviewer {second.name}", "review accepted"),
        (f"Update submit accepted from reviewer {second.name}", "review submitted"),
        *[(f"Update vote accepted from council {m.name}", "council vote") for m in members],
    ]:
        [accepted] = find(entries, update)
        following = entries[entries.index(accepted) + 1]
        assert following["source"] == "audit" and following["text"].startswith(recorded), following
        assert following["actor"]["user_id"] == accepted["actor"]["user_id"] is not None
    # The SDK's own markers (which code path a run took) are bookkeeping; no raw marker line.
    assert not [e for e in entries if e["text"].startswith(("marker ", "code change"))]
    # Who did what: the applicant submitted, the first expert declined with the reason, each
    # member voted; the updates carry the same users.
    [submitted] = find(entries, "submitted (stage screening)")
    assert submitted["actor"]["user_id"] == applicant.id
    [decline] = find(entries, "review declined")
    assert decline["actor"]["name"] == first.name and "I advise the applicant." in decline["text"]
    votes = [e for e in entries if e["source"] == "audit" and e["kind"] == "council_vote"]
    assert sorted(v["actor"]["user_id"] for v in votes) == sorted(m.id for m in members)
    updates = find(entries, "Update vote accepted")
    assert [u["actor"]["user_id"] for u in updates] == [m.id for m in members]
    # Only this application's part of the council session: one record_decision, its own.
    assert len(find(entries, "activity record_decision")) == 1
    assert any(w.startswith(f"council-{sid}/") for w in found["workflows"])
    # Every line links to the Web UI: Temporal events to the event, audit events to the run.
    for e in entries:
        assert e["link"].startswith(f"{UI}/namespaces/default/workflows")
        if e["source"] == "temporal":
            assert e["link"].endswith(f"/{e['run_id']}/history/events/{e['event_id']}")
        else:
            assert e["link"].endswith("/history"), e


async def _offered_to_another(council: Council, app_id: str, first: User) -> User | None:
    for reviewer in council.reviewers:
        if reviewer.id == first.id:
            continue
        inbox = await council.stack.api.get("/v1/reviews", headers=reviewer.headers)
        if any(t["application_id"] == app_id for t in inbox.json()["items"]):
            return reviewer
    return None


@pytest.mark.slow
async def test_waiting_for_through_the_agreement_the_pilot_and_reporting_across_runs(
    inspecting: Inspecting, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = inspecting.stack
    council = Council(stack, admin, make_user)
    # A new run of the agreement every 5 changes (acceptance, a tranche, reminders, reports).
    project = await Project.accepted(
        council, applicant, tranche_interval=60, report_interval=60, continue_as_new_after=5
    )
    app_id = project.app["id"]

    items = await waits_for(stack, admin, app_id, "agreement", "submit the progress report 1")
    assert one(items, "plan the pilot")["user_ids"] == [applicant.id]
    report = one(items, "submit the progress report 1")
    state = await agreement(council, applicant, project.app)
    assert at(report["by"]) == at(state["reports"][0]["due_at"])
    assert "escalated to the admins" in report["otherwise"]
    assert report["otherwise"].endswith("tranche 2 stays held until it is accepted")

    clinic = await project.coordinator()
    assert (await project.plan(clinic, duration=2)).status_code == 200
    items = await waits_for(stack, admin, app_id, "piloting", "accept or decline the pilot")
    site = one(items, "accept or decline the pilot")
    assert site["who"] == f"the coordinators of {clinic.institution_id}"
    assert site["workflow_id"] == f"site-{app_id}-1"
    assert one(items, "submit the progress report 1")["user_ids"] == [applicant.id]
    accepted = await project.site(clinic, "acceptance", status="proposed")
    assert accepted.status_code == 200, accepted.text
    running = one(await waits_for(stack, admin, app_id, "piloting", "r"), "r")
    assert running["what"] == "report the measured metrics" or running["what"].startswith(
        "run the pilot until"
    )
    assert running["by"] is not None and "escalation to the admins" in running["otherwise"]
    sent = await project.report_site(clinic)
    assert sent.status_code == 200, sent.text
    items = await waits_for(stack, admin, app_id, "piloting", "evaluate the pilot")
    expert = await project.evaluator()
    assert one(items, "evaluate the pilot")["user_ids"] == [expert.id]
    _, evaluated = await project.evaluate("implement")
    assert evaluated.status_code == 200, evaluated.text
    items = await waits_for(stack, admin, app_id, "piloting", "decide on the evaluated pilot")
    assert one(items, "decide on the evaluated pilot")["who"] == "admins"
    assert (await project.decide("implement")).status_code == 200
    items = await waits_for(stack, admin, app_id, "reporting", "submit the progress report 1")
    assert [w["workflow_id"] for w in items] == [f"agreement-{app_id}"]
    assert (await project.report(1)).status_code == 200
    items = await waits_for(stack, admin, app_id, "reporting", "accept or return the progress")
    review = one(items, "accept or return the progress report 1")
    assert (review["who"], review["otherwise"]) == ("admins", "tranche 2 stays held")
    assert (await project.review_report(1, True)).status_code == 200
    final = one(await waits_for(stack, admin, app_id, "reporting", "submit the final"), "submit")
    assert final["user_ids"] == [applicant.id] and final["by"] is not None

    async def two_runs() -> dict[str, Any] | None:
        found = await history(stack, admin, app_id)
        runs = [w for w in found["workflows"] if w.startswith(f"agreement-{app_id}/")]
        return found if len(runs) >= 2 else None

    found = await eventually(two_runs)
    runs = [w for w in found["workflows"] if w.startswith(f"agreement-{app_id}/")]
    assert len(runs) >= 2, found["workflows"]
    entries = found["entries"]
    in_order(
        entries,
        [
            ("temporal", f"child workflow Agreement started: agreement-{app_id}"),
            ("temporal", f"Update accept accepted from applicant {applicant.name}"),
            ("audit", "tranche released: tranche 1"),
            ("temporal", f"child workflow Pilot started: pilot-{app_id}"),
            ("temporal", f"child workflow PilotSite started: site-{app_id}-1"),
            ("temporal", f"Update answer accepted from coordinator {clinic.name}"),
            ("temporal", f"Update report accepted from coordinator {clinic.name}"),
            ("temporal", f"Update evaluate accepted from reviewer {expert.name}"),
            ("temporal", f"Update decide accepted from admin {admin.name}"),
            ("temporal", f"child workflow pilot-{app_id} completed"),
            ("temporal", f"Update submit_report accepted from applicant {applicant.name}"),
            ("temporal", f"Update review_report accepted from admin {admin.name}"),
        ],
    )
    # The runs follow each other: one continues as new, the next starts from it.
    [continued] = find(entries, "workflow Agreement continued as new in run ")
    new_run = continued["text"].rsplit(" ", 1)[1]
    following = entries[entries.index(continued) + 1]
    assert following["run_id"] == new_run and following["text"].startswith(
        f"workflow Agreement started by application-{app_id}, continuing run"
    )
    # A timer still pending says when it fires: the agreement sleeps until the next deadline.
    assert find(found["entries"], "timer next report or tranche deadline set: fires")


async def test_a_closed_application_waits_for_nothing(
    inspecting: Inspecting, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = inspecting.stack
    council = Council(stack, admin, make_user)
    await council.open()
    app = await council.submit(applicant)
    withdrawn = await stack.api.post(
        f"/v1/applications/{app['id']}/withdrawal",
        json={"reason": "Funded elsewhere."},
        headers=applicant.headers,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert await waiting(stack, admin, app["id"]) == {
        "application_id": app["id"],
        "stage": "withdrawn",
        "waiting": [],
    }

    async def ended() -> list[dict[str, Any]] | None:
        # The withdrawal answers at once; the review's cancellation follows.
        entries: list[dict[str, Any]] = (await history(stack, admin, app["id"]))["entries"]
        return entries if find(entries, "workflow Application completed") else None

    entries = await eventually(ended)
    in_order(
        entries,
        [
            ("temporal", f"child workflow Review started: review-{app['id']}"),
            ("audit", f"withdrawn (stage withdrawn) by applicant {applicant.name}: Funded"),
            ("temporal", f"cancellation of review-{app['id']} requested"),
            ("temporal", f"child workflow review-{app['id']} cancelled"),
            ("temporal", "workflow Application completed"),
        ],
    )
    [update] = find(entries, "Update withdraw accepted from applicant")
    assert update["actor"] == {"user_id": applicant.id, "role": "applicant", "name": applicant.name}
    # Completed now: its Stage search attribute says where it ended (no Query replaying its
    # history on a worker), and the answer is the same.
    described = await stack.client.get_workflow_handle(ids.application(app["id"])).describe()
    assert ended_stage(described) == Stage.withdrawn
    assert await waiting(stack, admin, app["id"]) == {
        "application_id": app["id"],
        "stage": "withdrawn",
        "waiting": [],
    }


async def test_only_admins_inspect_and_an_unknown_application_is_404(
    inspecting: Inspecting, admin: User, applicant: User, make_user: UserFactory
) -> None:
    stack = inspecting.stack
    council = Council(stack, admin, make_user)
    await council.open()
    app = await council.submit(applicant)
    member = await make_user(Role.council)
    for path in ("history", "waiting"):
        url = f"/v1/admin/applications/{app['id']}/{path}"
        assert (await stack.api.get(url)).status_code == 401
        for user in (applicant, member):
            refused = await stack.api.get(url, headers=user.headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["detail"] == f"this needs the role admin; you are {user.role}"
        unknown = await stack.api.get(
            f"/v1/admin/applications/{uuid.uuid4()}/{path}", headers=admin.headers
        )
        assert unknown.status_code == 404 and unknown.json()["detail"] == "application not found"


@pytest.mark.slow
async def test_grantflow_history_json_gives_the_same_as_the_api(
    inspecting: Inspecting, admin: User, applicant: User, tmp_path: Path
) -> None:
    stack = inspecting.stack
    programme = await stack.api.post(
        "/v1/programmes",
        json=programme_body(),
        headers=admin.headers,
    )
    assert programme.status_code == 201, programme.text
    body = application_body(programme.json()["id"], requested_rub=31_000_000)
    created = await stack.api.post("/v1/applications", json=body, headers=applicant.headers)
    app_id = created.json()["id"]
    assert created.json()["stage"] == "revision_requested"
    via_api = await history(stack, admin, app_id)

    run = await grantflow(stack, tmp_path, "history", "--json", app_id)
    assert run.code == 0, run.err + run.out
    via_cli = json.loads(run.out)
    assert via_cli["application_id"] == app_id and via_cli["stage"] == "revision_requested"
    assert [e["text"] for e in via_cli["entries"]] == [e["text"] for e in via_api["entries"]]
    assert via_cli["waiting"] == via_api["waiting"]
    # Without GRANTFLOW_TEMPORAL_UI_URL the links go to the dev server's UI port.
    assert all(
        e["link"].startswith("http://127.0.0.1:8233/namespaces/default/workflows")
        for e in via_cli["entries"]
    )

    text = await grantflow(stack, tmp_path, "history", app_id)
    assert text.code == 0, text.err + text.out
    assert "stage revision_requested" in text.out
    assert "waiting for applicant: revise the application" in text.out
    assert "Update registered accepted" in text.out
    missing = await grantflow(stack, tmp_path, "waiting", str(uuid.uuid4()))
    assert missing.code == 2 and "application not found" in missing.err
