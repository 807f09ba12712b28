"""The authorization matrix: every route of the app (found from the app itself) with every
role, the users who own the object and users of other institutions who do not. Anonymous
callers get 401, the wrong role 403, someone else's object 404 (or the workflow's 409 where
the docs say so), and no refused request changes a row.

Adding a route? Add one line to MATRIX: the roles the route lets through and, for each role
whose access depends on the object, the world's user who owns it (None: nobody of that role).
A route without a line, or a line without a route, fails the test."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from grantflow.dev.embedded import EmbeddedPostgres
from schemas.common import Role
from tests.conftest import (
    SESSION,
    Stack,
    User,
    application_body,
    eventually,
    programme_body,
    table_digests,
    user_factory,
)
from tests.isolated import isolated_stack
from tests.routes import api_routes, body_model
from tests.test_agreement import agreement
from tests.test_council import Council, approve
from tests.test_pilot import METRICS
from tests.test_review import reaches

pytestmark = [SESSION, pytest.mark.system]

ALL = frozenset(Role)
ADMIN = frozenset({Role.admin})
APPLICANT = frozenset({Role.applicant})
APPLICANT_OR_ADMIN = frozenset({Role.applicant, Role.admin})
REVIEWER = frozenset({Role.reviewer})
REVIEWER_OR_ADMIN = frozenset({Role.reviewer, Role.admin})
COUNCIL = frozenset({Role.council})
COUNCIL_OR_ADMIN = frozenset({Role.council, Role.admin})
COORDINATOR = frozenset({Role.coordinator})

# Who owns what, by role: the World attribute naming the owner (None: nobody of that role).
# Roles left out see every object the route serves; admins always do.
Owners = dict[Role, str | None]
APPLICATION: Owners = {Role.applicant: "applicant", Role.reviewer: None, Role.council: None}
APPLICATION |= {Role.coordinator: None}
AGREEMENT: Owners = APPLICATION | {Role.reviewer: "expert"}
TASK: Owners = {Role.reviewer: "task_reviewer"}
SITE: Owners = {Role.coordinator: "coordinator"}
SESSION_MEMBER: Owners = {Role.council: "member"}
CHAIR: Owners = {Role.council: None}  # the admin who opened the session chairs it
EXPERT: Owners = {Role.reviewer: "expert"}
EVALUATOR: Owners = {Role.reviewer: None}  # the pilot has no evaluator yet

Body = Callable[["World"], dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    """One route: the roles it lets through and whose object it is.

    `refusal` is what a user of an allowed role gets on an object not theirs: 404 (ids reveal
    nothing), 409 where a workflow refuses with the reason, or "hidden" for a list that
    simply leaves the object out (`hides` names the id it must not show). `body` is a valid
    body, so that refused requests get as far as the ownership check."""

    roles: frozenset[Role] | None  # None: public, no token needed
    owners: Mapping[Role, str | None] = field(default_factory=dict)
    refusal: int | str = 404
    body: Body | None = None
    query: dict[str, str] = field(default_factory=dict)
    hides: str = ""
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> World.ids key


def _content(w: World) -> dict[str, Any]:
    return {k: v for k, v in w.application_body.items() if k != "programme_id"}


def _site(w: World) -> dict[str, Any]:
    return {
        "clinic_id": w.coordinator.institution_id,
        "starts_at": datetime.now(UTC).isoformat(),
        "duration": 3600,
        "metrics": METRICS,
    }


MATRIX: dict[tuple[str, str], Entry] = {
    ("GET", "/healthz"): Entry(None),
    ("GET", "/livez"): Entry(None),
    ("GET", "/readyz"): Entry(None),
    ("GET", "/v1/me"): Entry(ALL),
    ("POST", "/v1/users"): Entry(ADMIN, body=lambda w: {"name": "New", "role": "council"}),
    ("GET", "/v1/me/notifications"): Entry(ALL),
    ("POST", "/v1/programmes"): Entry(ADMIN, body=lambda w: w.programme_body),
    ("GET", "/v1/programmes"): Entry(ALL),
    ("GET", "/v1/programmes/{programme_id}"): Entry(ALL),
    ("POST", "/v1/applications"): Entry(APPLICANT, body=lambda w: w.application_body),
    ("GET", "/v1/applications"): Entry(
        APPLICANT_OR_ADMIN, {Role.applicant: "applicant"}, "hidden", hides="application_id"
    ),
    ("GET", "/v1/applications/{application_id}"): Entry(ALL, APPLICATION),
    ("GET", "/v1/applications/{application_id}/timeline"): Entry(ALL, APPLICATION),
    ("POST", "/v1/applications/{application_id}/revision"): Entry(ALL, APPLICATION, body=_content),
    ("POST", "/v1/applications/{application_id}/withdrawal"): Entry(
        ALL, APPLICATION, body=lambda w: {"reason": "Changed our mind."}
    ),
    ("GET", "/v1/reviews"): Entry(REVIEWER, TASK, "hidden", hides="task_id"),
    ("GET", "/v1/reviews/{task_id}"): Entry(REVIEWER_OR_ADMIN, TASK),
    ("POST", "/v1/reviews/{task_id}/acceptance"): Entry(REVIEWER, TASK),
    ("POST", "/v1/reviews/{task_id}/decline"): Entry(
        REVIEWER, TASK, body=lambda w: {"reason": "Busy.", "conflict_of_interest": False}
    ),
    ("POST", "/v1/reviews/{task_id}/review"): Entry(
        REVIEWER,
        TASK,
        body=lambda w: {
            "scores": {"clinical_value": 5, "novelty": 5, "feasibility": 5},
            "recommendation": "fund",
            "comments": "Fine.",
        },
    ),
    ("POST", "/v1/programmes/{programme_id}/council-sessions"): Entry(
        ADMIN, body=lambda w: {"name": "Extra session", "member_ids": [w.member.id]}
    ),
    ("GET", "/v1/council-sessions/{session_id}"): Entry(COUNCIL_OR_ADMIN),
    ("POST", "/v1/council-sessions/{session_id}/votes"): Entry(
        COUNCIL,
        SESSION_MEMBER,
        409,  # a non-member's vote is refused by the session, with the reason (README)
        body=lambda w: {
            "application_id": w.ids["in_session"],
            "choice": "approve",
            "reason": "Good.",
        },
    ),
    ("POST", "/v1/council-sessions/{session_id}/decisions/{application_id}"): Entry(
        COUNCIL_OR_ADMIN, CHAIR, 409, ids={"application_id": "in_session"}
    ),
    ("POST", "/v1/council-sessions/{session_id}/close"): Entry(COUNCIL_OR_ADMIN, CHAIR, 409),
    ("GET", "/v1/programmes/{programme_id}/ledger"): Entry(ADMIN),
    ("GET", "/v1/programmes/{programme_id}/figures"): Entry(ADMIN),
    ("GET", "/v1/applications/{application_id}/agreement"): Entry(ALL, AGREEMENT),
    ("POST", "/v1/applications/{application_id}/agreement/acceptance"): Entry(
        APPLICANT, APPLICATION
    ),
    ("POST", "/v1/applications/{application_id}/agreement/decline"): Entry(
        APPLICANT, APPLICATION, body=lambda w: {"reason": "No longer needed."}
    ),
    ("POST", "/v1/applications/{application_id}/reports/{seq}"): Entry(
        APPLICANT, APPLICATION, body=lambda w: {"body": "All on track."}
    ),
    ("POST", "/v1/admin/applications/{application_id}/reports/{seq}/decision"): Entry(
        ADMIN, body=lambda w: {"accept": True, "comment": "Fine."}
    ),
    ("POST", "/v1/admin/applications/{application_id}/reports/reviewer"): Entry(
        ADMIN, body=lambda w: {"reason": "Another pair of eyes."}
    ),
    ("GET", "/v1/report-reviews"): Entry(REVIEWER, EXPERT, "hidden", hides="application_id"),
    ("POST", "/v1/applications/{application_id}/reports/{seq}/decision"): Entry(
        REVIEWER, EXPERT, body=lambda w: {"accept": True, "comment": "Fine."}
    ),
    ("POST", "/v1/applications/{application_id}/pilot"): Entry(
        APPLICANT_OR_ADMIN, APPLICATION, body=lambda w: {"sites": [_site(w)]}
    ),
    ("GET", "/v1/applications/{application_id}/pilot"): Entry(ALL, APPLICATION),
    ("GET", "/v1/clinic/sites"): Entry(COORDINATOR, SITE, "hidden", hides="site_id"),
    ("POST", "/v1/sites/{site_id}/acceptance"): Entry(COORDINATOR, SITE),
    ("POST", "/v1/sites/{site_id}/decline"): Entry(
        COORDINATOR, SITE, body=lambda w: {"reason": "No staff."}
    ),
    ("POST", "/v1/sites/{site_id}/report"): Entry(
        COORDINATOR, SITE, body=lambda w: {"measured": {"patients": 1}}
    ),
    ("GET", "/v1/evaluations"): Entry(REVIEWER, EVALUATOR, "hidden", hides="application_id"),
    ("POST", "/v1/applications/{application_id}/pilot/evaluation"): Entry(
        REVIEWER, EVALUATOR, body=lambda w: {"recommendation": "stop", "comments": "No."}
    ),
    ("POST", "/v1/admin/applications/{application_id}/pilot/sites"): Entry(
        ADMIN, body=lambda w: {"replaces": w.ids["site_id"], "plan": _site(w)}
    ),
    ("POST", "/v1/admin/applications/{application_id}/pilot/evaluator"): Entry(
        ADMIN, query={"evaluator_id": str(uuid.uuid4())}
    ),
    ("POST", "/v1/admin/applications/{application_id}/pilot/decision"): Entry(
        ADMIN, body=lambda w: {"decision": "stop", "reason": "No."}
    ),
    ("GET", "/v1/admin/reports/overdue"): Entry(ADMIN),
    ("GET", "/v1/programmes/{programme_id}/outcomes"): Entry(ADMIN),
    ("GET", "/v1/admin/applications/flagged"): Entry(ADMIN),
    ("GET", "/v1/admin/reviews/overdue"): Entry(ADMIN),
    ("GET", "/v1/admin/applications/{application_id}/reviews"): Entry(ADMIN),
    ("POST", "/v1/admin/applications/{application_id}/reviewers"): Entry(
        ADMIN, body=lambda w: {"reviewer_id": w.strangers[Role.reviewer].id, "reason": "Help."}
    ),
    ("GET", "/v1/admin/applications"): Entry(ADMIN),
    ("POST", "/v1/admin/applications/{application_id}/deadlines"): Entry(
        ADMIN,
        body=lambda w: {
            "kind": "agreement",
            "until": (datetime.now(UTC) + timedelta(days=9)).isoformat(),
            "reason": "More time.",
        },
    ),
    ("POST", "/v1/admin/reviews/{task_id}/reassignment"): Entry(
        ADMIN, body=lambda w: {"reason": "On sick leave."}
    ),
    ("POST", "/v1/admin/applications/{application_id}/screening"): Entry(
        ADMIN, body=lambda w: {"reason": "The rules changed."}
    ),
    ("POST", "/v1/admin/applications/{application_id}/cancellation"): Entry(
        ADMIN, body=lambda w: {"reason": "Abandoned."}
    ),
    ("GET", "/v1/admin/programmes/{programme_id}/export/{dataset}"): Entry(ADMIN),
    ("POST", "/v1/admin/programmes/{programme_id}/corrections"): Entry(
        ADMIN, body=lambda w: {"max_grant_rub": 10_000_000, "reason": "Entered wrong."}
    ),
    ("GET", "/v1/admin/programmes/{programme_id}/corrections"): Entry(ADMIN),
    ("GET", "/v1/admin/applications/{application_id}/history"): Entry(ADMIN),
    ("GET", "/v1/admin/applications/{application_id}/waiting"): Entry(ADMIN),
    ("POST", "/v1/admin/reviews/{task_id}/deadline"): Entry(
        ADMIN,
        body=lambda w: {
            "until": (datetime.now(UTC) + timedelta(days=9)).isoformat(),
            "reason": "More time.",
        },
    ),
}


@dataclass
class World:
    """Every kind of object, each owned by someone, and users of other institutions."""

    stack: Stack
    admin: User
    applicant: User
    task_reviewer: User
    expert: User
    member: User
    coordinator: User
    strangers: dict[Role, User]
    ids: dict[str, str]
    programme_body: dict[str, Any]
    application_body: dict[str, Any]
    reviewers: list[User]  # who reviewed the applicant's applications: never shown to it

    def users(self, role: Role) -> list[User]:
        """Everyone of the role in this world: owners, related users and strangers."""
        related = {
            Role.admin: [self.admin],
            Role.applicant: [self.applicant],
            Role.reviewer: [self.task_reviewer, self.expert],
            Role.council: [self.member],
            Role.coordinator: [self.coordinator],
        }[role]
        return [*related, *([self.strangers[role]] if role in self.strangers else [])]


async def _build(stack: Stack) -> World:
    make_user = user_factory(stack)
    admin = await make_user(Role.admin)
    applicant = await make_user(Role.applicant)
    council = Council(stack, admin, make_user)
    approved = await approve(council, applicant)
    app_id = approved["id"]
    await agreement(council, applicant, approved)
    accepted = await stack.api.post(
        f"/v1/applications/{app_id}/agreement/acceptance", headers=applicant.headers
    )
    assert accepted.status_code == 200, accepted.text
    await reaches(stack, applicant, app_id, "agreement")
    coordinator = await make_user(Role.coordinator)
    site = {
        "clinic_id": coordinator.institution_id,
        "starts_at": datetime.now(UTC).isoformat(),
        "duration": 3600,
        "metrics": METRICS,
    }
    planned = await stack.api.post(
        f"/v1/applications/{app_id}/pilot", json={"sites": [site]}, headers=applicant.headers
    )
    assert planned.status_code == 200, planned.text

    async def proposed() -> str | None:
        sites = await stack.api.get("/v1/clinic/sites", headers=coordinator.headers)
        return next((s["site_id"] for s in sites.json() if s["status"] == "proposed"), None)

    site_id = await eventually(proposed)
    in_session = await council.reviewed(applicant, 7, title="On the agenda")
    session = await council.session("Matrix session")
    # An open review task, so that its reviewer's actions reach a running workflow.
    under_review = await council.submit(applicant, title="Under review")

    async def offered() -> dict[str, Any] | None:
        tasks = await stack.api.get(
            f"/v1/admin/applications/{under_review['id']}/reviews", headers=admin.headers
        )
        found: list[dict[str, Any]] = tasks.json()["tasks"]
        return found[0] if found else None

    task = await eventually(offered)
    task_reviewer = next(r for r in council.reviewers if r.id == task["reviewer_id"])
    # The reports' expert: a reviewer of its own, so that no one holds two roles here.
    expert = await council.reviewer()
    assigned = await stack.api.post(
        f"/v1/admin/applications/{app_id}/reports/reviewer",
        json={"reviewer_id": expert.id, "reason": "The matrix needs one."},
        headers=admin.headers,
    )
    assert assigned.status_code == 200, assigned.text
    strangers = {
        role: await make_user(role, specialty=council.specialty if role == Role.reviewer else None)
        for role in (Role.applicant, Role.reviewer, Role.council, Role.coordinator)
    }
    return World(
        stack=stack,
        admin=admin,
        applicant=applicant,
        task_reviewer=task_reviewer,
        expert=expert,
        member=council.members[0],
        coordinator=coordinator,
        strangers=strangers,
        ids={
            "programme_id": council.programme["id"],
            "application_id": app_id,
            "task_id": task["task_id"],
            "session_id": session["session_id"],
            "site_id": site_id,
            "seq": "1",
            "dataset": "applications",
            "in_session": in_session["id"],
        },
        programme_body=programme_body(),
        application_body=application_body(council.programme["id"]),
        reviewers=council.reviewers,
    )


async def _quiet(stack: Stack) -> dict[str, str]:
    """The tables' digest once the worker has nothing left to write (notifications sent)."""

    async def settled() -> dict[str, str] | None:
        async with stack.pool.acquire() as conn:
            pending = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE delivered_at IS NULL"
            )
        first = await table_digests(stack.pool)
        await asyncio.sleep(0.5)
        return first if pending == 0 and first == await table_digests(stack.pool) else None

    found: dict[str, str] = await eventually(settled, within=30)
    return found


def _expected(entry: Entry, world: World, user: User | None) -> int | str:
    """What `user` (None: no token) must get: a status, or "allowed"."""
    if entry.roles is None:
        return "allowed"
    if user is None:
        return 401
    if user.role not in entry.roles:
        return 403
    if user.role == Role.admin or user.role not in entry.owners:
        return "allowed"
    owner = entry.owners[user.role]
    if owner is not None and getattr(world, owner) is user:
        return "allowed"
    return entry.refusal


@dataclass
class Call:
    method: str
    path: str
    user: User | None
    expected: int | str
    response: httpx.Response


async def _send(world: World, method: str, path: str, entry: Entry, user: User | None) -> Call:
    expected = _expected(entry, world, user)
    ids = {**world.ids, **{param: world.ids[key] for param, key in entry.ids.items()}}
    url = path.format_map(ids)
    headers = user.headers if user else {}
    body: Any = entry.body(world) if entry.body else None
    query = entry.query
    if expected == "allowed" and method == "POST":
        # Let through, so it must fail only on its input: no side effects in the walk.
        body, query = ({"__probe__": 1} if entry.body else None), {}
    response = await world.stack.api.request(method, url, json=body, params=query, headers=headers)
    return Call(method, path, user, expected, response)


def _check(call: Call, entry: Entry, world: World) -> str | None:
    """Why the call's answer is wrong, or None."""
    status = call.response.status_code
    who = f"{call.method} {call.path} as {call.user.role if call.user else 'anonymous'}"
    if call.expected == "hidden":
        hidden = world.ids[entry.hides]
        if status != 200 or hidden in call.response.text:
            return f"{who}: {status}, must answer 200 without {hidden}: {call.response.text}"
        return None
    if call.expected == "allowed":
        if call.method == "GET":
            ok = status == 200
        else:
            ok = status == 422 if (entry.body or entry.query) else status not in (401, 403, 404)
        return None if ok else f"{who}: {status} for a caller it lets through: {call.response.text}"
    if status != call.expected:
        return f"{who}: {status}, expected {call.expected}: {call.response.text[:200]}"
    return None


@pytest.mark.slow
async def test_every_route_refuses_whoever_it_must_and_nothing_changes(
    postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment
) -> None:
    async with isolated_stack(postgres, temporal_env, "matrix") as stack:
        app = stack.api._transport.app  # type: ignore[attr-defined]
        routes = [(m, p) for m, p, _ in api_routes(app)]
        missing = [r for r in routes if r not in MATRIX]
        assert not missing, f"routes without an entry in MATRIX: {missing}"
        stale = [r for r in MATRIX if r not in routes]
        assert not stale, f"entries in MATRIX without a route: {stale}"
        for method, path, route in api_routes(app):
            entry = MATRIX[(method, path)]
            assert (entry.body is not None) == (body_model(route) is not None), (method, path)

        world = await _build(stack)
        callers: list[User | None] = [None]
        for role in Role:
            callers.extend(world.users(role))
        before = await _quiet(stack)
        calls, deferred = [], []
        for method, path in routes:
            entry = MATRIX[(method, path)]
            for user in callers:
                expected = _expected(entry, world, user)
                bodyless = method == "POST" and not entry.body and not entry.query
                if expected == "allowed" and bodyless:
                    deferred.append((method, path, entry, user))
                    continue
                calls.append(await _send(world, method, path, entry, user))
        kinds = {c.expected for c in calls}
        assert kinds >= {401, 403, 404, 409, "hidden", "allowed"} and len(calls) > 400, kinds
        problems = [p for c in calls if (p := _check(c, MATRIX[(c.method, c.path)], world))]
        assert not problems, "\n".join(problems)
        after = await table_digests(stack.pool)
        changed = [t for t in before if before[t] != after.get(t)]
        assert not changed, f"refused requests changed {changed}"
        _assert_nothing_leaks(world, calls)

        # Bodyless actions of callers let through have effects: last, and only their status.
        for method, path, entry, user in deferred:
            call = await _send(world, method, path, entry, user)
            assert call.response.status_code not in (401, 403, 404), (
                f"{method} {path} as {user.role if user else None}: {call.response.text}"
            )


def _assert_nothing_leaks(world: World, calls: list[Call]) -> None:
    """No answer carries a token or its hash; none to an applicant names a reviewer of its
    application (reviews are blind to applicants)."""
    users = [u for role in Role for u in world.users(role)]
    secrets = [u.token for u in users] + [
        hashlib.sha256(u.token.encode()).hexdigest() for u in users
    ]
    for call in calls:
        text = call.response.text
        assert "token_hash" not in text, (call.method, call.path)
        for secret in secrets:
            assert secret not in text, (call.method, call.path)
        if call.user is not None and call.user.role == Role.applicant:
            for reviewer in world.reviewers:
                assert reviewer.id not in text, (call.method, call.path, reviewer.id)
                assert reviewer.name not in text, (call.method, call.path, reviewer.name)
