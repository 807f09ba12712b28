"""A clinic coordinator's work in the browser, in Russian and in English: two pilots proposed
to the clinic, one declined (asked for its reason first) and the other accepted; once its
period is over, the site's report with the plan's metrics, a mistyped value said beside its
field and kept as typed, then sent. axe checks every page; screenshots go to
docs/screenshots/."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from grantflow.store.account import set_preferences
from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, eventually
from tests.pages.conftest import Member, Site, person, visit, with_password
from tests.test_agreement import agreement
from tests.test_council import Council
from tests.test_pilot import Project
from tests.test_review import reaches

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright

SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "sign_in": "Войти",
        "pilots": "Пилоты в моей клинике",
        "two_wait": "2 пилота ждут вашего ответа",
        "decline": "Отказаться от пилота",
        "say_why": "Объясните, почему клиника отказывается",
        "declined": "Вы отказались от пилота.",
        "accept": "Принять пилот",
        "accepted": "Вы приняли пилот.",
        "target": "не меньше 400 patients",
        "send": "Отправить отчёт",
        "number": "Введите число",
        "reported": "Отчёт площадки отправлен.",
        "met": "Да",
        "zone": "(Москва, UTC+03:00)",
    },
    "en": {
        "sign_in": "Sign in",
        "pilots": "My clinic's pilots",
        "two_wait": "2 pilots wait for your answer",
        "decline": "Decline the pilot",
        "say_why": "Say why the clinic declines",
        "declined": "You declined the pilot.",
        "accept": "Accept the pilot",
        "accepted": "You accepted the pilot.",
        "target": "at least 400 patients",
        "send": "Send the report",
        "number": "Enter a number",
        "reported": "The site's report is sent.",
        "met": "Yes",
        "zone": "(Moscow, UTC+03:00)",
    },
}


async def approved_projects(council: Council, applicant: User, *titles: str) -> list[Project]:
    """Applications approved by the council, their agreements accepted: waiting for a plan."""
    members = await council.setup()
    apps = [await council.reviewed(applicant, 8, title=title) for title in titles]
    session = await council.session()
    for app in apps:
        for member in members:
            await council.vote(session, member, app, "approve")
    closed = await council.close(session)
    assert [d["outcome"] for d in closed.json()] == ["approved"] * len(apps), closed.text
    projects = []
    for app in apps:
        await reaches(council.stack, applicant, app["id"], "approved")
        await agreement(council, applicant, app)
        accepted = await council.stack.api.post(
            f"/v1/applications/{app['id']}/agreement/acceptance", headers=applicant.headers
        )
        assert accepted.status_code == 200, accepted.text
        projects.append(Project(council, applicant, app))
    return projects


async def sign_in(page: Page, site: Site, member: Member, says: dict[str, str]) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(f"{site.url}/sites")


async def site_row(stack: Stack, project: Project) -> Any:
    return await stack.pool.fetchrow(
        "SELECT status, reason, measurements FROM pilot_sites WHERE application_id = $1",
        uuid.UUID(project.app["id"]),
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_a_coordinator_declines_one_site_accepts_another_and_reports_its_metrics(
    lang: str,
    site: Site,
    stack: Stack,
    admin: User,
    make_user: UserFactory,
    applicant: User,
    browser: Browser,
) -> None:
    says = SAYS[lang]
    council = Council(stack, admin, make_user)
    declined, accepted = await approved_projects(
        council, applicant, "Home dialysis coaching", "AI triage of chest X-rays"
    )
    clinic = await make_user(Role.coordinator, name="Nina")
    me = await with_password(stack, clinic)
    await set_preferences(stack.pool, uuid.UUID(clinic.id), locale=lang)
    for project, seconds in ((declined, 60), (accepted, 2)):
        planned = await project.plan(clinic, duration=seconds)
        assert planned.status_code == 200, planned.text
        await project.site_of(clinic, "proposed")

    async with person(browser, locale=lang) as page:
        await sign_in(page, site, me, says)
        await expect(page.get_by_role("heading", level=1)).to_have_text(says["pilots"])
        await expect(page.get_by_text(says["two_wait"])).to_be_visible()
        await visit(page, f"{lang}-coordinator-01-sites")

        # Declined, after being asked for the reason beside its field.
        await page.get_by_role("link", name="Home dialysis coaching").first.click()
        await expect(page.get_by_text(says["target"])).to_be_visible()
        await expect(page.get_by_text(says["zone"]).first).to_be_visible()
        await visit(page, f"{lang}-coordinator-02-site")
        await page.get_by_role("button", name=says["decline"]).click()
        await expect(page.locator("#f-reason-error")).to_contain_text(says["say_why"])
        await expect(page.locator("#f-reason")).to_be_focused()
        await page.locator("#f-reason").fill("No dialysis unit until the spring.")
        await page.get_by_role("button", name=says["decline"]).click()
        await page.wait_for_url("**/sites?done=declined")
        await expect(page.get_by_text(says["declined"])).to_be_visible()
        await visit(page)

        # Accepted; once its period is over, the report form with the plan's metrics.
        await page.get_by_role("link", name="AI triage of chest X-rays").first.click()
        await page.get_by_role("button", name=says["accept"]).click()
        await page.wait_for_url("**?done=accepted")
        await expect(page.get_by_text(says["accepted"])).to_be_visible()
        await accepted.site_of(clinic, "running")

        async def report_form() -> bool:  # once the two-second period has run out
            await page.reload()
            return await page.locator("#f-m_patients").count() > 0

        await eventually(report_form, within=20, interval=0.5)
        await page.locator("#f-m_patients").fill("450 пациентов" if lang == "ru" else "450 pts")
        await page.locator("#f-m_minutes_saved").fill("7,5" if lang == "ru" else "7.5")
        await page.locator("#f-comments").fill("Two radiologists used it every day.")
        await page.get_by_role("button", name=says["send"]).click()
        await expect(page.locator("#f-m_patients-error")).to_contain_text(says["number"])
        await expect(page.locator("#f-m_patients")).to_be_focused()
        await expect(page.locator("#f-comments")).to_have_value(
            "Two radiologists used it every day."
        )
        await visit(page, f"{lang}-coordinator-03-report-errors")
        await page.locator("#f-m_patients").fill("450")
        await page.get_by_role("button", name=says["send"]).click()
        await page.wait_for_url("**?done=reported")
        await expect(page.get_by_text(says["reported"])).to_be_visible()
        await expect(page.get_by_role("cell", name=says["met"], exact=True)).to_have_count(2)
        await visit(page, f"{lang}-coordinator-04-reported")
        await page.goto(f"{site.url}/sites")
        await visit(page, f"{lang}-coordinator-05-sites-after")

    no = await site_row(stack, declined)
    assert (no["status"], no["reason"]) == ("declined", "No dialysis unit until the spring.")
    yes = await site_row(stack, accepted)
    assert yes["status"] == "completed"
    assert "7.5" in str(yes["measurements"]) and "450" in str(yes["measurements"])
