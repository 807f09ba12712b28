"""The applicant's agreement and reports in the browser, in both languages: the agreement
the council's approval offers (its tranches in roubles, the reports it will owe), declining
asked first with a reason, accepting without JavaScript; then the reports due with their
deadlines, one written and sent, a stale form refused with its reason and nothing typed lost,
a returned report read with the expert's comment and sent again. axe on every page."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from grantflow.store.account import set_preferences
from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory
from tests.pages.conftest import Member, Site, person, shoot, visit, with_password
from tests.pages.test_admin_manage import money
from tests.pages.test_reviewer import switch_language
from tests.test_agreement import agreement
from tests.test_council import Council, approve

pytestmark = [SESSION, pytest.mark.slow]  # a real browser, and a council's approval first

SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "sign_in": "Войти",
        "answer": "Прочитать соглашение и ответить",
        "offered": "Предложено: ждёт вашего ответа",
        "accept": "Принять соглашение",
        "decline": "Отказаться от соглашения",
        "yes_decline": "Да, отказаться",
        "say_why": "Объясните причину",
        "accepted": "Вы приняли соглашение. Первый транш выплачен.",
        "paid_first": "Выплачен",
        "write": "Написать отчёт",
        "language": "English",
    },
    "en": {
        "sign_in": "Sign in",
        "write": "Write the report",
        "send": "Send the report",
        "send_again": "Send the report again",
        "write_error": "Write the report",
        "stale": "Report 1 cannot change now.",
        "sent": "Your report is sent. The expert will accept it or return it.",
        "waiting": "Sent: waiting for the expert's decision",
        "returned": "Returned for changes",
        "again": "Change and send again",
        "financial": "Financial report №3",
        "language": "Русский",
    },
}
COMMENT = "Please add the numbers per clinic."


async def sign_in(page: Page, site: Site, member: Member, says: dict[str, str]) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(f"{site.url}/")


async def accept_agreement(page: Page, site: Site, application_id: str, accept: str) -> None:
    """On the agreement's page: the button, then the page again saying it is accepted."""
    await page.goto(f"{site.url}/applications/{application_id}/agreement")
    await visit(page)
    await page.get_by_role("button", name=accept).click()
    await page.wait_for_url("**/agreement?done=accepted")
    await visit(page)


async def send_report(page: Page, site: Site, application_id: str, seq: int, body: str) -> None:
    """From the agreement's page: the report's link, the text, the button."""
    await page.goto(f"{site.url}/applications/{application_id}/agreement")
    await page.locator(f"#report-{seq}").get_by_role("link").click()
    await visit(page)
    await page.locator("#f-body").fill(body)
    await page.get_by_role("button", name=SAYS["en"]["send"]).click()
    await page.wait_for_url(f"**/agreement?done=report_sent#report-{seq}")
    await expect(page.locator(f"#report-{seq}")).to_contain_text(SAYS["en"]["waiting"])
    await visit(page)


async def applicant_member(stack: Stack, applicant: User, locale: str) -> Member:
    member = await with_password(stack, applicant)
    await set_preferences(stack.pool, uuid.UUID(applicant.id), locale=locale)
    return member


async def decide(stack: Stack, admin: User, app: dict[str, Any], seq: int, accept: bool) -> None:
    """The admin's decision on a report (its own pages are test_admin_manage's)."""
    decided = await stack.api.post(
        f"/v1/admin/applications/{app['id']}/reports/{seq}/decision",
        json={"accept": accept, "comment": COMMENT},
        headers=admin.headers,
    )
    assert decided.status_code == 200, decided.text


@pytest.mark.timeout(300)
async def test_an_applicant_accepts_the_agreement_and_sends_reports_in_both_languages(
    site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    admin = await make_user(Role.admin)
    applicant = await make_user(Role.applicant)
    council = Council(stack, admin, make_user)
    # Two project years of an hour each, a progress report every half hour and a financial
    # one every hour: reports 1-2 progress, 3 financial, 4 progress, 5 final.
    app = await approve(
        council,
        applicant,
        tranche_interval=3600,
        report_interval=1800,
        financial_report_interval=3600,
    )
    await agreement(council, applicant, app)
    member = await applicant_member(stack, applicant, "ru")
    agreement_url = f"{site.url}/applications/{app['id']}/agreement"

    # In Russian: the offer read, declining asked about first.
    ru = SAYS["ru"]
    async with person(browser, locale="ru") as page:
        await sign_in(page, site, member, ru)
        await page.goto(f"{site.url}/applications/{app['id']}")
        await visit(page)
        await page.get_by_role("link", name=ru["answer"]).click()
        await page.wait_for_url(agreement_url)
        await expect(page.get_by_role("main")).to_contain_text(ru["offered"])
        await expect(page.locator("#tranche-1")).to_contain_text(money(15_000_000, "ru"))
        await expect(page.locator("#tranche-2")).to_contain_text(money(15_000_000, "ru"))
        await visit(page, "ru-agreement-01-offered")
        await page.get_by_role("link", name=ru["decline"]).click()
        await visit(page)
        await page.get_by_role("button", name=ru["yes_decline"]).click()  # no reason given
        await expect(page.locator("#f-reason-error")).to_contain_text(ru["say_why"])
        await expect(page.locator("#f-reason")).to_be_focused()
        await visit(page)

    # Accepted without JavaScript: a plain form (axe needs scripts: the English part below
    # checks the accepted page).
    async with person(browser, locale="ru", javascript=False) as page:
        await sign_in(page, site, member, ru)
        await page.goto(agreement_url)
        await page.get_by_role("button", name=ru["accept"]).click()
        await page.wait_for_url("**/agreement?done=accepted")
        await expect(page.get_by_role("main")).to_contain_text(ru["accepted"])
        await expect(page.locator("#tranche-1")).to_contain_text(ru["paid_first"])
        await expect(page.locator("#report-1").get_by_role("link")).to_contain_text(ru["write"])
        await shoot(page, "ru-agreement-02-accepted")
    state = await agreement(council, applicant, app)
    assert state["status"] == "accepted" and state["disbursed_rub"] == 15_000_000
    assert [r["kind"] for r in state["reports"]] == [
        "progress",
        "progress",
        "financial",
        "progress",
        "final",
    ]

    # In English: an empty report refused beside its box; a report sent; a stale form refused
    # with the reason, the text kept; the returned report changed and sent again.
    en = SAYS["en"]
    async with person(browser, locale="ru") as page, person(browser, locale="ru") as other:
        await sign_in(page, site, member, ru)
        await page.goto(agreement_url)
        await switch_language(page, ru["language"])
        await visit(page)
        await expect(page.locator("#report-3")).to_contain_text(en["financial"])
        await page.locator("#report-1").get_by_role("link").click()
        await page.get_by_role("button", name=en["send"]).click()
        await expect(page.locator("#f-body-error")).to_contain_text(en["write_error"])
        await expect(page.locator("#f-body")).to_be_focused()
        await page.locator("#f-body").fill("Quarter one: 40 000 studies labelled.")
        await visit(page, "en-report-01-form")

        # The same report sent meanwhile from another tab: this form is refused, text kept.
        await sign_in(other, site, member, ru)
        await send_report(other, site, app["id"], 1, "Sent from the other tab.")
        await page.get_by_role("button", name=en["send"]).click()
        await expect(page.get_by_role("alert")).to_contain_text(en["stale"])
        await expect(page.locator("#f-body")).to_have_value("Quarter one: 40 000 studies labelled.")
        await visit(page)

        await decide(stack, admin, app, 1, accept=False)
        await page.goto(agreement_url)
        report = page.locator("#report-1")
        await expect(report).to_contain_text(en["returned"])
        await expect(report).to_contain_text(COMMENT)
        await report.get_by_role("link", name=en["again"]).click()
        await expect(page.get_by_role("main")).to_contain_text(COMMENT)
        await expect(page.locator("#f-body")).to_have_value("Sent from the other tab.")
        await page.locator("#f-body").fill("Quarter one: 40 000 studies labelled in 2 clinics.")
        await visit(page, "en-report-02-returned")
        await page.get_by_role("button", name=en["send_again"]).click()
        await page.wait_for_url("**/agreement?done=report_sent#report-1")
        await expect(page.get_by_role("status")).to_contain_text(en["sent"])
        await expect(page.locator("#report-1")).to_contain_text(en["waiting"])
        await visit(page)
        # The application's timeline: the acceptance once (both workflows record it), the
        # council's reason with its amount in roubles.
        await page.goto(f"{site.url}/applications/{app['id']}")
        timeline = page.locator(".timeline")
        await expect(timeline.locator("li", has_text="Agreement accepted")).to_have_count(1)
        await expect(timeline).to_contain_text(f"for {money(30_000_000, 'en')}")
        await visit(page)
    state = await agreement(council, applicant, app)
    assert state["reports"][0]["status"] == "submitted"
    assert state["reports"][0]["body"] == "Quarter one: 40 000 studies labelled in 2 clinics."


DASHBOARD = {
    "ru": {
        "two": "У вас 2 заявки.",  # noqa: RUF001 - Russian letters, meant
        "one_needs_you": "1 ждёт ваших действий.",
        "accept": "Примите соглашение.",
        "being_prepared": "готовится соглашение",
        "reviewing": "независимые эксперты",
    },
    "en": {
        "two": "You have 2 applications.",
        "one_needs_you": "1 needs you.",
        "accept": "Accept the agreement.",
        "being_prepared": "the agreement is being prepared",
        "reviewing": "independent experts are reviewing it",
    },
}


def _card(page: Page, application_id: str) -> Locator:
    """An application's card on the dashboard, found by its link."""
    return page.locator("li.card", has=page.locator(f'a[href="/applications/{application_id}"]'))


@pytest.mark.timeout(300)
async def test_the_dashboard_asks_to_accept_an_offered_agreement_in_both_languages(
    site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    """An approved application whose agreement is offered is the applicant's to act on: the
    dashboard's card says to accept it by its deadline (not "being prepared") and counts it
    among those that need the applicant, unlike an application under review beside it."""
    admin = await make_user(Role.admin)
    applicant = await make_user(Role.applicant)
    council = Council(stack, admin, make_user)
    approved = await approve(council, applicant)
    offered = await agreement(council, applicant, approved)
    assert offered["status"] == "offered"
    accept_by = datetime.fromisoformat(offered["accept_by"])
    in_review = await council.submit(applicant)
    member = await applicant_member(stack, applicant, "ru")

    async with person(browser, locale="ru") as page:
        await sign_in(page, site, member, SAYS["ru"])
        for lang, says in DASHBOARD.items():
            if lang == "en":
                await switch_language(page, SAYS["ru"]["language"])
            main = page.get_by_role("main")
            await expect(main.locator(".lead")).to_contain_text(says["two"])
            await expect(main.locator(".lead strong")).to_have_text(says["one_needs_you"])
            card = _card(page, approved["id"])
            step = card.locator(".next.yours")
            await expect(step).to_contain_text(says["accept"])
            await expect(card).not_to_contain_text(says["being_prepared"])
            shown = await step.locator("time").get_attribute("datetime")
            assert shown is not None and datetime.fromisoformat(shown) == accept_by
            other = _card(page, in_review["id"])
            await expect(other).to_contain_text(says["reviewing"])
            await expect(other.locator(".next.yours")).to_have_count(0)
            await expect(main.locator("li.card.needs-you")).to_have_count(1)
            await visit(page)
        # The application's own page says the same.
        await _card(page, approved["id"]).get_by_role("link").click()
        await page.wait_for_url(f"**/applications/{approved['id']}")
        await expect(page.get_by_role("main")).to_contain_text(DASHBOARD["en"]["accept"])
        await visit(page)
