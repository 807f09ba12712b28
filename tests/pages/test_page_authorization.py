"""Every page (found from the app itself) with every role and a stranger: a stranger is sent
to sign in, an applicant sees only its own applications and drafts (another's is 404, never
403), staff roles are refused an applicant's drafts (403), admins see any application.

Adding a page? Add one line to PAGES (and a body to BODIES for a POST): a page without a line,
or a line without a page, fails the test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from schemas.common import Role
from tests.conftest import SESSION, UserFactory, application_body, eventually
from tests.pages.conftest import (
    Member,
    Site,
    csrf,
    from_address,
    open_programme,
    with_password,
)
from tests.routes import page_routes

pytestmark = [SESSION, pytest.mark.system]

ROLES = ("stranger", "owner", "other", "reviewer", "council", "coordinator", "admin")
STAFF = ("reviewer", "council", "coordinator", "admin")
Expect = dict[str, int]


def each(code: int, **other: int) -> Expect:
    return {role: other.get(role, code) for role in ROLES}


def signed_in(code: int) -> Expect:
    return each(code, stranger=303)


def applicants_only(owner: int, other: int = 404) -> Expect:
    return {"stranger": 303, "owner": owner, "other": other} | dict.fromkeys(STAFF, 403)


def owner_or_admin(owner: int) -> Expect:
    return each(404, stranger=303, owner=owner, admin=owner)


def reviewers_only(reviewer: int) -> Expect:
    return each(403, stranger=303, reviewer=reviewer)


def council_only(council: int) -> Expect:
    return each(403, stranger=303, council=council)


def coordinators_only(coordinator: int) -> Expect:
    return each(403, stranger=303, coordinator=coordinator)


def admins_only(admin: int) -> Expect:
    return each(403, stranger=303, admin=admin)


DRAFT, APP = "/drafts/{draft_id}", "/applications/{application_id}"
PROG, SESS = "/admin/programmes/{programme_id}", "/admin/sessions/{session_id}"
USER = "/admin/users/{user_id}"
ADMIN_APP = "/admin/applications/{application_id}"
TASK = "/reviews/{task_id}"
SESSION_PAGE, SITE = "/council/{session_id}", "/sites/{site_id}"
REPORT, EVALUATION = "/report-reviews/{application_id}/{seq}", "/evaluations/{application_id}"
PAGES: dict[tuple[str, str], Expect] = {
    ("GET", "/sign-in"): each(303, stranger=200),
    ("GET", "/register"): each(303, stranger=200),
    ("GET", "/forgot-password"): each(200),
    ("GET", "/confirm-email"): each(404),  # without a live link
    ("GET", "/set-password"): each(404),
    ("GET", "/reset-password"): each(404),
    ("GET", "/account"): signed_in(200),
    # A reviewer's start is the inbox; a council member's, its sessions; a coordinator's,
    # sites; an admin's, the dashboard.
    ("GET", "/"): each(200, stranger=303, reviewer=303, council=303, coordinator=303, admin=303),
    ("GET", "/calls"): signed_in(200),
    ("GET", "/calls/{programme_id}"): signed_in(200),
    ("GET", DRAFT): applicants_only(200),
    ("GET", f"{DRAFT}/review"): applicants_only(200),
    ("GET", APP): owner_or_admin(200),
    ("GET", f"{APP}/revision"): owner_or_admin(303),  # not asked for: back to the application
    ("GET", f"{APP}/withdraw"): owner_or_admin(200),
    ("GET", f"{APP}/agreement"): owner_or_admin(303),  # none yet: back to the application
    # The applicant's own agreement and reports only (the world's application has none yet).
    ("GET", f"{APP}/agreement/decline"): applicants_only(404),
    ("GET", f"{APP}/reports/{{seq}}"): applicants_only(404),
    ("GET", "/reviews"): reviewers_only(200),
    ("GET", "/reviews/past"): reviewers_only(200),
    ("GET", TASK): reviewers_only(200),
    ("GET", f"{TASK}/review"): reviewers_only(303),  # not accepted yet: back to the task
    ("GET", f"{TASK}/confirm"): reviewers_only(303),
    ("GET", "/council"): council_only(200),
    ("GET", SESSION_PAGE): council_only(200),
    ("GET", f"{SESSION_PAGE}/standing"): council_only(200),
    ("GET", "/sites"): coordinators_only(200),
    ("GET", SITE): coordinators_only(404),  # another clinic's site, or none, is not found
    # Only the expert assigned to them; the world's reviewer is not, and its pilot has none.
    ("GET", REPORT): reviewers_only(404),
    ("GET", EVALUATION): reviewers_only(404),
    ("GET", "/admin/programmes"): admins_only(200),
    ("GET", "/admin/programmes/new"): admins_only(200),
    ("GET", PROG): admins_only(200),
    ("GET", f"{PROG}/correct"): admins_only(200),
    ("GET", f"{PROG}/sessions/new"): admins_only(200),
    ("GET", SESS): admins_only(200),
    ("GET", f"{SESS}/close"): admins_only(200),
    ("GET", "/admin/reports"): admins_only(200),
    ("GET", f"{ADMIN_APP}/reports"): admins_only(404),  # no agreement yet
    ("GET", f"{ADMIN_APP}/pilot"): admins_only(200),  # not planned: the plan's form
    ("GET", "/admin/users"): admins_only(200),
    ("GET", "/admin/users/new"): admins_only(200),
    ("GET", USER): admins_only(200),
    ("GET", f"{USER}/deactivate"): admins_only(200),
    ("POST", "/admin/programmes"): admins_only(200),  # an empty form: its errors
    ("POST", f"{PROG}/correct"): admins_only(200),  # no reason: asked for one
    ("POST", f"{PROG}/sessions"): admins_only(200),  # no name: asked for one
    ("POST", f"{SESS}/decide"): admins_only(200),  # not on the agenda: said on the page
    ("POST", f"{ADMIN_APP}/reports/{{seq}}"): admins_only(404),  # no agreement yet
    ("POST", f"{ADMIN_APP}/report-reviewer"): admins_only(404),
    ("POST", f"{ADMIN_APP}/pilot/plan"): admins_only(200),  # no clinic: asked for one
    ("POST", f"{ADMIN_APP}/pilot/evaluator"): admins_only(200),  # no id: asked for one
    ("POST", f"{ADMIN_APP}/pilot/decision"): admins_only(200),  # no reason: asked for one
    ("POST", "/admin/users"): admins_only(200),  # an empty form: its errors
    ("POST", f"{USER}/role"): admins_only(200),  # no reason: asked for one
    ("POST", f"{USER}/deactivate"): admins_only(200),  # no reason: asked for one
    ("GET", "/admin"): admins_only(200),
    ("GET", "/admin/applications"): admins_only(200),
    ("GET", "/admin/applications.csv"): admins_only(200),
    ("GET", ADMIN_APP): admins_only(200),
    ("GET", f"{ADMIN_APP}/events"): admins_only(200),
    ("POST", "/sign-in"): each(200),  # a wrong password: the form again
    ("POST", "/register"): each(200),  # an empty form: its errors
    ("POST", "/forgot-password"): each(200),
    ("POST", "/set-password"): each(404),
    ("POST", "/reset-password"): each(404),
    ("POST", "/language"): each(303),
    ("POST", "/account"): signed_in(303),
    ("POST", "/drafts"): applicants_only(303, other=303),  # any applicant may start one
    ("POST", DRAFT): applicants_only(303),
    ("POST", f"{DRAFT}/submit"): applicants_only(200),  # still incomplete: the form again
    ("POST", f"{APP}/revision"): owner_or_admin(200),  # a line added: the form again
    ("POST", f"{APP}/withdraw"): owner_or_admin(200),  # no reason: asked for one
    ("POST", f"{APP}/agreement/accept"): applicants_only(404),
    ("POST", f"{APP}/agreement/decline"): applicants_only(404),
    ("POST", f"{APP}/reports/{{seq}}"): applicants_only(404),
    ("POST", f"{TASK}/accept"): reviewers_only(200),  # no declaration: asked for it
    ("POST", f"{TASK}/decline"): reviewers_only(200),  # no reason: asked for one
    ("POST", f"{TASK}/review"): reviewers_only(303),  # the draft saved
    ("POST", f"{TASK}/submit"): reviewers_only(200),  # the draft incomplete: the form again
    ("POST", f"{SESSION_PAGE}/votes"): council_only(303),  # not on the agenda: back to it
    ("POST", f"{SITE}/accept"): coordinators_only(404),
    ("POST", f"{SITE}/decline"): coordinators_only(404),
    ("POST", f"{SITE}/report"): coordinators_only(404),
    ("POST", REPORT): reviewers_only(404),
    ("POST", EVALUATION): reviewers_only(404),
    # No reason given: the application's page again, the error beside the reason's box.
    ("POST", f"{ADMIN_APP}/deadline"): admins_only(200),
    ("POST", f"{ADMIN_APP}/reassign"): admins_only(200),
    ("POST", f"{ADMIN_APP}/reviewer"): admins_only(200),
    ("POST", f"{ADMIN_APP}/rescreen"): admins_only(200),
    ("POST", f"{ADMIN_APP}/withdraw"): admins_only(200),
    ("POST", f"{ADMIN_APP}/cancel"): admins_only(200),
    # What ends something comes last, in this order.
    ("POST", f"{SESS}/close"): admins_only(303),
    ("POST", f"{DRAFT}/delete"): applicants_only(303),
    ("POST", "/sign-out"): each(303),
    ("POST", "/sign-out-everywhere"): each(303),
}
BODIES: dict[str, dict[str, str]] = {
    "/sign-in": {"email": "nobody-{role}@clinic.example", "password": "wrong password"},
    "/forgot-password": {"email": "nobody@clinic.example"},
    "/set-password": {"token": "dead", "password": "x" * 12, "password_again": "x" * 12},
    "/reset-password": {"token": "dead", "password": "x" * 12, "password_again": "x" * 12},
    "/language": {"locale": "en", "next": "/"},
    "/drafts": {"programme_id": "{programme_id}"},
    "/account": {"locale": "en", "time_zone": "Europe/Moscow"},
    DRAFT: {"action": "save", "title": "Draft of the owner"},
    f"{APP}/revision": {"action": "add_line"},
    f"{APP}/withdraw": {"reason": ""},
    f"{TASK}/decline": {"reason": ""},
    f"{TASK}/review": {"action": "save", "score_novelty": "5"},
    f"{SESSION_PAGE}/votes": {
        "application_id": "{application_id}",
        "choice": "approve",
        "reason": "Sound plan.",
    },
}


@dataclass
class World:
    members: dict[str, Member]
    values: dict[str, str]  # path parameter -> the owner's object


async def make_world(site: Site, make_user: UserFactory) -> World:
    roles = {
        "owner": Role.applicant,
        "other": Role.applicant,
        "reviewer": Role.reviewer,
        "council": Role.council,
        "coordinator": Role.coordinator,
        "admin": Role.admin,
    }
    specialty = f"cardiology-{uuid.uuid4().hex[:6]}"  # its only reviewer gets the task
    members = {
        key: await with_password(
            site.stack,
            await make_user(role, specialty=specialty if role == Role.reviewer else None),
        )
        for key, role in roles.items()
    }
    programme = await open_programme(
        site.stack, make_user, specialties=["cardiology", "radiology", specialty]
    )
    owner = members["owner"]
    created = await site.stack.api.post(
        "/v1/applications", json=application_body(programme["id"]), headers=owner.user.headers
    )
    assert created.status_code == 201, created.text
    draft_id = await site.stack.pool.fetchval(
        "INSERT INTO drafts (id, applicant_id, programme_id) VALUES ($1, $2, $3) RETURNING id",
        uuid.uuid4(),
        uuid.UUID(owner.user.id),
        uuid.UUID(programme["id"]),
    )
    reviewed = await site.stack.api.post(
        "/v1/applications",
        json=application_body(programme["id"], specialty=specialty),
        headers=owner.user.headers,
    )
    assert reviewed.status_code == 201, reviewed.text
    task_id = await _task_of(site, members["reviewer"], reviewed.json()["id"])
    session = await site.stack.api.post(
        f"/v1/programmes/{programme['id']}/council-sessions",
        json={"name": "World session", "member_ids": [members["council"].user.id]},
        headers=members["admin"].user.headers,
    )
    assert session.status_code == 201, session.text
    values = {
        "session_id": session.json()["session_id"],
        "site_id": f"site-{uuid.uuid4()}-1",
        "task_id": task_id,
        "programme_id": programme["id"],
        "application_id": created.json()["id"],
        "draft_id": str(draft_id),
        "user_id": members["other"].user.id,
        "seq": "1",
    }
    return World(members, values)


async def _task_of(site: Site, reviewer: Member, application_id: str) -> str:
    """The review task offered to the world's reviewer, moments after screening."""

    async def offered() -> uuid.UUID | None:
        found: uuid.UUID | None = await site.stack.pool.fetchval(
            "SELECT id FROM review_tasks WHERE reviewer_id = $1 AND application_id = $2",
            uuid.UUID(reviewer.user.id),
            uuid.UUID(application_id),
        )
        return found

    await eventually(offered, within=30, interval=0.2)
    return str(await offered())


async def client_of(site: Site, world: World, role: str, n: int) -> httpx.AsyncClient:
    client = from_address(site, f"10.9.{n}.{uuid.uuid4().int % 250}")
    await client.__aenter__()
    if role != "stranger":
        member = world.members[role]
        token = await csrf(client, "/sign-in")
        data = {"email": member.email, "password": member.password, "csrf_token": token}
        signed = await client.post("/sign-in", data=data)
        assert signed.status_code == 303, (role, signed.text)
    return client


def _sent_elsewhere(role: str, path: str, response: httpx.Response) -> bool:
    """A stranger redirected anywhere but to sign in (the language switch aside)."""
    if role != "stranger" or response.status_code != 303 or path == "/language":
        return False
    return not response.headers["location"].startswith("/sign-in")


async def test_every_page_lets_in_whom_it_must_and_no_one_else(
    site: Site, make_user: UserFactory
) -> None:
    app = site.stack.api._transport.app  # type: ignore[attr-defined]
    pages = [(method, path) for method, path, _ in page_routes(app)]
    missing = [p for p in pages if p not in PAGES]
    assert not missing, f"pages without an entry in PAGES: {missing}"
    stale = [p for p in PAGES if p not in pages]
    assert not stale, f"entries in PAGES without a page: {stale}"

    world = await make_world(site, make_user)
    problems = []
    for n, role in enumerate(ROLES):
        client = await client_of(site, world, role, n)
        try:
            for method, path in PAGES:  # in order: what ends something is last
                url = path.format(**world.values)
                if method == "GET":
                    response = await client.get(url)
                else:
                    token = await csrf(client, "/forgot-password")  # this session's, now
                    body = BODIES.get(path, {})
                    data = {k: v.format(role=role, **world.values) for k, v in body.items()}
                    data["csrf_token"] = token
                    response = await client.post(url, data=data)
                expected = PAGES[(method, path)][role]
                if response.status_code != expected:
                    problems.append(f"{role} {method} {url}: {response.status_code} != {expected}")
                elif _sent_elsewhere(role, path, response):
                    problems.append(f"stranger {method} {url}: not sent to sign in")
        finally:
            await client.__aexit__(None, None, None)
    assert not problems, "\n".join(problems)

    # Nobody but its applicant changed the application or the draft.
    stage = await site.stack.pool.fetchval(
        "SELECT stage FROM applications WHERE id = $1", uuid.UUID(world.values["application_id"])
    )
    assert stage == "under_review"
