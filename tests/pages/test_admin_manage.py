"""An admin's management work in the browser, in Russian and in English: a call created
through the form (its errors beside their fields, nothing typed lost) and corrected with a
reason; a council session opened with its members, an item decided, an approval the budget
cannot cover refused with what is left, the session closed after a confirmation; a person
invited who sets a password and signs in; a person deactivated, whose session ends and whose
token answers 401. axe checks every page; screenshots go to docs/screenshots/."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from grantflow import i18n
from grantflow.services import account as accounts
from grantflow.services import user
from grantflow.services.context import Caller, Resources
from grantflow.services.errors import Conflict, Forbidden, Invalid, NotFound
from grantflow.store.account import set_preferences
from schemas.common import Actor, Role
from schemas.users import Deactivation, RoleChange
from tests.conftest import SESSION, Stack, User, UserFactory, eventually
from tests.pages.conftest import (
    PASSWORD,
    Member,
    Site,
    last_link,
    new_email,
    person,
    visit,
    with_password,
)
from tests.test_council import Council
from tests.test_pilot import Project
from tests.test_review import reaches

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright
LEAVES = Deactivation(reason="Left the hospital in May.")

SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "sign_in": "Войти",
        "create": "Открыть приём",
        "at_most_budget": "больше бюджета.",
        "fill": "Заполните это поле.",
        "created": "Приём открыт",
        "correct": "Исправить правила проверки",
        "record": "Записать исправление",
        "corrected": "Исправление записано",
        "open_session": "Открыть заседание совета",
        "open": "Открыть заседание",
        "decide": "Решить",
        "approved": "Одобрена",
        "refused": "Отказано: бюджет не покрывает это одобрение.",
        "close": "Закрыть заседание…",
        "yes_close": "Да, закрыть заседание",
        "closed": "Заседание закрыто",
        "deferred": "Перенесена на следующее заседание",
        "invite": "Отправить приглашение",
        "invited": "Приглашение отправлено",
        "save_password": "Сохранить пароль",
        "deactivate": "Деактивировать",
        "yes_deactivate": "Да, деактивировать",
        "deactivated": "Деактивирован",
        "plan": "Запланировать пилот",
        "record_decision": "Записать решение",
        "go_back": "Нет, вернуться",
        "yes_close_project": "Да, принять и завершить проект",
    },
    "en": {
        "sign_in": "Sign in",
        "create": "Open the call",
        "at_most_budget": "At most the budget.",
        "fill": "Fill this in.",
        "created": "The call is open",
        "correct": "Correct the screening rules",
        "record": "Record the correction",
        "corrected": "The correction is on record",
        "open_session": "Open a council session",
        "open": "Open the session",
        "decide": "Decide",
        "approved": "Approved",
        "refused": "Refused: the budget cannot cover this approval.",
        "close": "Close the session…",
        "yes_close": "Yes, close the session",
        "closed": "The session is closed",
        "deferred": "Deferred to the next session",
        "invite": "Send the invitation",
        "invited": "Invited: the link",
        "save_password": "Save the password",
        "deactivate": "Deactivate",
        "yes_deactivate": "Yes, deactivate",
        "deactivated": "Deactivated",
        "plan": "Plan the pilot",
        "record_decision": "Record the decision",
        "go_back": "No, go back",
        "yes_close_project": "Yes, accept and close the project",
    },
}


async def sign_in(page: Page, site: Site, member: Member, says: dict[str, str]) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(re.compile(r"^(?!.*sign-in).*$"))


async def an_admin(stack: Stack, make_user: UserFactory, lang: str) -> Member:
    member = await with_password(stack, await make_user(Role.admin, name="Olga Admin"))
    await set_preferences(stack.pool, uuid.UUID(member.user.id), locale=lang)
    return member


def money(amount: int, lang: str) -> str:
    with i18n.using(lang):
        return i18n.money(amount)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_an_admin_creates_a_programme_through_the_form_and_corrects_it(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    admin = await an_admin(stack, make_user, lang)
    name = f"Grants for telemedicine {uuid.uuid4().hex[:6]}"
    async with person(browser, locale=lang) as page:
        await sign_in(page, site, admin, says)
        await page.goto(f"{site.url}/admin/programmes/new")
        await visit(page, f"{lang}-admin-manage-01-programme-form")

        await page.locator("#f-name").fill(name)
        await page.locator("#f-budget_rub").fill("500 000 000")
        await page.locator("#f-max_grant_rub").fill("600 000 000")
        await page.locator("#f-specialties").fill("cardiology\nradiology")
        await page.locator("#f-review_deadline-days").fill("10")
        await page.locator("#f-review_deadline-hours").fill("12")
        await page.get_by_role("button", name=says["create"], exact=True).click()
        # The error beside its field, the focus on it, and nothing typed lost.
        await expect(page.locator("#f-max_grant_rub-error")).to_contain_text(says["at_most_budget"])
        await expect(page.locator("#f-max_grant_rub")).to_be_focused()
        await expect(page.locator("#f-name")).to_have_value(name)
        await expect(page.locator("#f-review_deadline-hours")).to_have_value("12")
        await visit(page, f"{lang}-admin-manage-02-programme-errors")

        await page.locator("#f-max_grant_rub").fill("50 000 000")
        await page.get_by_role("button", name=says["create"], exact=True).click()
        await page.wait_for_url(re.compile(r"/admin/programmes/[0-9a-f-]{36}\?done=created$"))
        await expect(page.get_by_text(says["created"])).to_be_visible()
        await visit(page, f"{lang}-admin-manage-03-programme")
        programme_id = page.url.split("/")[-1].split("?")[0]
        row = await stack.pool.fetchrow(
            "SELECT budget_rub, max_grant_rub, specialties, params FROM programmes WHERE id = $1",
            uuid.UUID(programme_id),
        )
        assert row is not None
        assert (row["budget_rub"], row["max_grant_rub"]) == (500_000_000, 50_000_000)
        assert row["specialties"] == ["cardiology", "radiology"]
        created = await stack.api.get(f"/v1/programmes/{programme_id}", headers=admin.user.headers)
        params = created.json()["params"]
        assert params["review_deadline"] == "P10DT12H"
        assert params["revision_window"] == "P14D"  # the default, as the form showed it

        # A correction needs its reason; the value typed stays while it is asked for.
        await page.get_by_role("link", name=says["correct"]).click()
        await page.locator("#f-max_grant_rub").fill("40 000 000")
        await page.get_by_role("button", name=says["record"]).click()
        await expect(page.locator("#f-reason-error")).to_contain_text(says["fill"])
        await expect(page.locator("#f-max_grant_rub")).to_have_value("40 000 000")
        await visit(page)
        await page.locator("#f-reason").fill("The cap was typed as 50 M; the order says 40 M.")
        await page.get_by_role("button", name=says["record"]).click()
        await page.wait_for_url(f"**/admin/programmes/{programme_id}?done=corrected")
        await expect(page.get_by_text(says["corrected"])).to_be_visible()
        await expect(page.get_by_text("the order says 40 M")).to_be_visible()
        await visit(page)
    assert (
        await stack.pool.fetchval(
            "SELECT max_grant_rub FROM programmes WHERE id = $1", uuid.UUID(programme_id)
        )
        == 40_000_000
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_an_admin_opens_a_session_decides_refuses_an_overspend_and_closes_it(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    admin = await an_admin(stack, make_user, lang)
    council = Council(stack, admin.user, make_user)
    members = await council.setup(budget_rub=40_000_000)
    applicant = await make_user(Role.applicant)
    first = await council.reviewed(applicant, 8, title="Cardio triage at home")
    second = await council.reviewed(applicant, 7, title="Stroke rehab with VR")

    async with person(browser, locale=lang) as page:
        await sign_in(page, site, admin, says)
        await page.goto(f"{site.url}/admin/programmes/{council.programme['id']}")
        await page.get_by_role("link", name=says["open_session"]).click()
        # Only this council's three members vote (others may exist).
        for box in await page.locator("input[name=member_ids]").all():
            await box.uncheck()
        for member in members:
            await page.get_by_label(member.name, exact=True).check()
        await page.locator("#f-name").fill("March session")
        await visit(page, f"{lang}-admin-manage-04-session-new")
        await page.get_by_role("button", name=says["open"]).click()
        await page.wait_for_url(re.compile(r"/admin/sessions/[0-9a-f-]{36}\?done=opened$"))
        session = {"session_id": page.url.split("/")[-1].split("?")[0]}

        for app in (first, second):
            for member in members:
                voted = await council.vote(session, member, app, "approve")
                assert voted.status_code == 200, voted.text
        await page.reload()
        await expect(page.locator("#budget-left")).to_have_text(money(40_000_000, lang))
        item = page.locator(f"#item-{first['id']}")
        await item.get_by_role("button", name=re.compile(says["decide"])).click()
        await page.wait_for_url(f"**/admin/sessions/{session['session_id']}?done=decided*")
        await expect(page.locator(f"#item-{first['id']}")).to_contain_text(says["approved"])
        await expect(page.locator("#budget-left")).to_have_text(money(10_000_000, lang))

        # 30 M more would overspend: refused beside the item, with what is left.
        item = page.locator(f"#item-{second['id']}")
        await item.get_by_role("button", name=re.compile(says["decide"])).click()
        refusal = page.locator(f"#item-{second['id']} .notice.error")
        await expect(refusal).to_contain_text(says["refused"])
        await expect(refusal).to_contain_text(money(10_000_000, lang))
        await visit(page, f"{lang}-admin-manage-05-session-refusal")

        await page.get_by_role("link", name=says["close"]).click()
        await visit(page, f"{lang}-admin-manage-06-session-close")
        await page.get_by_role("button", name=says["yes_close"]).click()
        await page.wait_for_url(f"**/admin/sessions/{session['session_id']}?done=closed")
        await expect(page.get_by_text(says["closed"])).to_be_visible()
        await expect(page.locator(f"#item-{second['id']}")).to_contain_text(says["deferred"])
        await visit(page, f"{lang}-admin-manage-07-session-closed")
    outcomes = await stack.pool.fetch(
        "SELECT application_id, outcome FROM decisions WHERE session_id = $1",
        uuid.UUID(session["session_id"]),
    )
    assert {(str(r["application_id"]), r["outcome"]) for r in outcomes} == {
        (first["id"], "approved"),
        (second["id"], "deferred"),
    }


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_an_admin_invites_a_person_who_sets_a_password_and_signs_in(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    admin = await an_admin(stack, make_user, lang)
    email = new_email("council")
    name = f"Pavel Councillor {uuid.uuid4().hex[:4]}"
    async with person(browser, locale=lang) as page:
        await sign_in(page, site, admin, says)
        await page.goto(f"{site.url}/admin/users/new")
        await page.locator("#f-email").fill(email)
        await page.locator("#f-role").select_option("council")
        await page.get_by_role("button", name=says["invite"]).click()
        await expect(page.locator("#f-name-error")).to_contain_text(says["fill"])
        await expect(page.locator("#f-email")).to_have_value(email)
        await visit(page, f"{lang}-admin-manage-08-user-invite")
        await page.locator("#f-name").fill(name)
        await page.locator("#f-locale").select_option(lang)
        await page.get_by_role("button", name=says["invite"]).click()
        await page.wait_for_url("**/admin/users?done=invited")
        await expect(page.locator(".notice")).to_contain_text(says["invited"])
        await expect(page.get_by_role("link", name=name)).to_be_visible()
        await visit(page, f"{lang}-admin-manage-09-users")

    link = await last_link(stack, email, "/set-password")
    async with person(browser, locale=lang) as page:
        await page.goto(link)
        await page.locator("#f-password").fill(PASSWORD)
        await page.locator("#f-password_again").fill(PASSWORD)
        await page.get_by_role("button", name=says["save_password"]).click()
        await page.wait_for_url("**/sign-in?password=set")
        await visit(page)
        invited = Member(User("", name, Role.council, None, ""), email)
        await sign_in(page, site, invited, says)
        await expect(page.get_by_role("link", name=name)).to_be_visible()
        await visit(page)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_deactivating_a_person_ends_its_session_and_its_token_answers_401(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    admin = await an_admin(stack, make_user, lang)
    expert = await with_password(
        stack, await make_user(Role.reviewer, specialty="cardiology", name="Ivan Expert")
    )
    await set_preferences(stack.pool, uuid.UUID(expert.user.id), locale=lang)
    assert (await stack.api.get("/v1/me", headers=expert.user.headers)).status_code == 200
    async with (
        person(browser, locale=lang) as theirs,
        person(browser, locale=lang) as page,
    ):
        await sign_in(theirs, site, expert, says)
        await expect(theirs.get_by_role("link", name="Ivan Expert")).to_be_visible()

        await sign_in(page, site, admin, says)
        await page.goto(f"{site.url}/admin/users/{expert.user.id}")
        await visit(page, f"{lang}-admin-manage-10-user")
        await page.get_by_role("link", name=re.compile(says["deactivate"])).click()
        await page.get_by_role("button", name=says["yes_deactivate"]).click()
        await expect(page.locator("#f-reason-error")).to_contain_text(says["fill"])
        await visit(page, f"{lang}-admin-manage-11-user-deactivate")
        await page.locator("#f-reason").fill("Left the hospital in May.")
        await page.get_by_role("button", name=says["yes_deactivate"]).click()
        await page.wait_for_url(f"**/admin/users/{expert.user.id}?done=deactivated")
        await expect(page.get_by_role("main")).to_contain_text(says["deactivated"])
        await visit(page)

        # Their next page asks them to sign in; signing in again is refused.
        await theirs.reload()
        await theirs.wait_for_url("**/sign-in?next=**")
        await theirs.locator("#f-email").fill(expert.email)
        await theirs.locator("#f-password").fill(expert.password)
        await theirs.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
        await expect(theirs.locator("#f-password")).to_be_visible()
        assert "/sign-in" in theirs.url
    refused = await stack.api.get("/v1/me", headers=expert.user.headers)
    assert refused.status_code == 401
    assert "deactivated" in refused.json()["detail"]
    live = await stack.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
        uuid.UUID(expert.user.id),
    )
    assert live == 0


# --- the service under the pages: what deactivation shuts, and who may do it -----------------


def caller_of(user: User) -> Caller:
    return Caller(Actor(user_id=user.id, role=user.role, name=user.name), organisation_type=None)


async def test_a_deactivated_user_stays_out_with_a_rotated_token_or_an_earlier_reset_link(
    site: Site, stack: Stack, make_user: UserFactory
) -> None:
    res = Resources(stack.settings, stack.pool, stack.client)
    admin = await make_user(Role.admin)
    expert = await with_password(stack, await make_user(Role.reviewer, specialty="oncology"))
    await accounts.request_password_reset(
        stack.pool, site.settings, expert.email, client_addr="10.7.0.1"
    )
    link = await last_link(stack, expert.email, "/reset-password")
    with pytest.raises(Forbidden):
        await user.deactivate(res, caller_of(expert.user), uuid.UUID(admin.id), LEAVES)
    with pytest.raises(Conflict):
        await user.deactivate(res, caller_of(admin), uuid.UUID(admin.id), LEAVES)

    gone = await user.deactivate(res, caller_of(admin), uuid.UUID(expert.user.id), LEAVES)
    assert gone.deactivated_at is not None
    again = await user.deactivate(res, caller_of(admin), uuid.UUID(expert.user.id), LEAVES)
    assert again.deactivated_at == gone.deactivated_at  # changes nothing

    rotated = await user.rotate_token(res, caller_of(admin), uuid.UUID(expert.user.id))
    refused = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {rotated.token}"})
    assert refused.status_code == 401
    assert "deactivated" in refused.json()["detail"]
    with pytest.raises(NotFound):  # the reset link sent before no longer works
        await accounts.set_password(
            stack.pool, link.split("token=")[1], "reset_password", "a new long password"
        )
    with pytest.raises(Invalid):
        await accounts.sign_in(
            stack.pool, site.settings, expert.email, expert.password, client_addr="10.7.0.2"
        )
    with pytest.raises(Conflict):
        body = RoleChange(role=Role.council, reason="Moved to the council.")
        await user.change_role(res, caller_of(admin), uuid.UUID(expert.user.id), body)
    events = await stack.pool.fetch(
        "SELECT kind, detail FROM account_events WHERE user_id = $1 AND kind = 'deactivated'",
        uuid.UUID(expert.user.id),
    )
    assert len(events) == 1
    assert "Left the hospital" in events[0]["detail"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_an_admin_plans_a_pilot_decides_it_and_decides_the_reports(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    admin = await an_admin(stack, make_user, lang)
    council = Council(stack, admin.user, make_user)
    applicant = await make_user(Role.applicant)
    project = await Project.accepted(council, applicant, tranche_interval=60, report_interval=60)
    clinic = await project.coordinator()
    pilot_url = f"{site.url}/admin/applications/{project.app['id']}/pilot"
    async with person(browser, locale=lang) as page:
        await sign_in(page, site, admin, says)
        await page.goto(pilot_url)
        await page.locator("#f-sites-0-clinic_id").fill(str(clinic.institution_id))
        start = datetime.now(ZoneInfo("Europe/Moscow")) - timedelta(minutes=1)
        await page.locator("#f-sites-0-starts_at").fill(start.strftime("%Y-%m-%dT%H:%M"))
        await page.locator("#f-sites-0-duration-days").fill("0")
        await page.locator("#f-sites-0-duration-hours").fill("0.0003")  # about a second
        await page.locator("#f-sites-0-metrics").fill("patients; patients; 400")
        await visit(page, f"{lang}-admin-manage-12-pilot-plan")
        await page.get_by_role("button", name=says["plan"]).click()
        await page.wait_for_url(f"{pilot_url}?done=planned")
        await visit(page)

        assert (await project.site(clinic, "acceptance", status="proposed")).status_code == 200
        site_state = await project.site_of(clinic, "running")
        reported = await eventually_reported(project, site_state["site_id"], clinic)
        assert reported.status_code == 200, reported.text
        _, evaluated = await project.evaluate("implement")
        assert evaluated.status_code == 200, evaluated.text

        # Stopping asks to confirm; going back keeps the pilot as it was.
        await page.goto(pilot_url)
        await page.locator("#f-decision").select_option("stop")
        await page.locator("#f-reason").fill("Targets not met at the clinic.")
        await page.get_by_role("button", name=says["record_decision"]).click()
        await visit(page, f"{lang}-admin-manage-13-pilot-stop-confirm")
        await page.get_by_role("link", name=says["go_back"]).click()
        await page.locator("#f-decision").select_option("implement")
        await page.locator("#f-reason").fill("The evaluation recommends it.")
        await page.get_by_role("button", name=says["record_decision"]).click()
        await page.wait_for_url(f"{pilot_url}?done=decided")
        await visit(page, f"{lang}-admin-manage-14-pilot-decided")
        await reaches(stack, applicant, project.app["id"], "reporting")

        assert (await project.report(1, "Quarter one.")).status_code == 200
        assert (await project.report(2, "Final: in routine use.")).status_code == 200
        await page.goto(f"{site.url}/admin/reports")
        await visit(page, f"{lang}-admin-manage-15-reports")
        await page.get_by_role("link", name=project.app["content"]["title"]).first.click()
        first = page.locator("#report-1")
        await first.get_by_role("textbox").fill("Milestones met.")
        await first.get_by_role("button").click()
        await page.wait_for_url("**/reports?done=accepted")
        final = page.locator("#report-2")
        await final.get_by_role("textbox").fill("In routine use at the clinic.")
        await final.get_by_role("combobox").select_option("implemented")
        await visit(page, f"{lang}-admin-manage-16-report")
        await final.get_by_role("button").click()
        await page.get_by_role("button", name=says["yes_close_project"]).click()
        await page.wait_for_url("**/reports?done=accepted")
        await visit(page)
    closed = await reaches(stack, applicant, project.app["id"], "closed")
    assert closed["stage"] == "closed"


async def eventually_reported(project: Project, site_id: str, clinic: User) -> Any:
    """The site's metrics, sent once its (one-second) period has ended."""

    async def sent() -> Any:
        response = await project.stack.api.post(
            f"/v1/sites/{site_id}/report",
            json={"measured": {"patients": 450}},
            headers=clinic.headers,
        )
        return None if "runs here until" in response.text else response

    return await eventually(sent, within=20)
