# ruff: noqa: RUF001 - Russian is what these tests read: its letters are meant
"""An applicant's life in the browser, in Russian and in English: register, confirm the e-mail
from the mailbox, start a draft, reload it, finish and submit it (with a double click), see
screening send it back, revise it, see the stage change, and withdraw a second application.
axe checks every page on the way; screenshots go to docs/screenshots/."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from grantflow.services import account, application
from grantflow.services.context import Resources
from grantflow.store import account as store_account
from schemas.application import ApplicationCreate
from schemas.common import Role
from tests.conftest import SESSION, Stack, UserFactory, application_body, eventually
from tests.pages.conftest import (
    PASSWORD,
    Site,
    new_email,
    open_programme,
    person,
    shoot,
    signed_in_client,
    visit,
    with_password,
)

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright

# What the person reads, in each language (the catalogues' words, not the code's).
SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "register": "Регистрация заявителя",
        "create_account": "Зарегистрироваться",
        "check_mail": "Проверьте почту",
        "thanks": "Спасибо",
        "sign_in": "Войти",
        "no_apps": "Вы ещё не подавали заявок.",
        "start": "Начать заявку",
        "saved": "Черновик сохранён",
        "review": "Проверить перед отправкой",
        "fix": "Исправьте, пожалуйста:",
        "fill": "Заполните это поле.",
        "add_line": "Добавить статью бюджета",
        "check": "Проверьте и подайте",
        "submit": "Подать заявку",
        "changes_needed": "Нужны исправления",
        "change": "Исправить заявку",
        "send_changed": "Отправить исправленную заявку",
        "with_experts": "У экспертов",
        "withdraw": "Отозвать заявку",
        "yes_withdraw": "Да, отозвать",
        "withdrawn": "Отозвана",
        "one_app": "У вас 1 заявка.",
        "two_apps": "У вас 2 заявки.",
        "zone": "(Москва, UTC+03:00)",
        "money": "30 000 000 ₽",
        "in_days": "через",
        "lines_finding": "Сумма статей бюджета не равна запрошенной сумме.",
        "reason": "Причина отзыва",
        "say_why": "Объясните причину",
        "needs_you": "ждёт ваших действий",
    },
    "en": {
        "register": "Register as an applicant",
        "create_account": "Create my account",
        "check_mail": "Check your e-mail",
        "thanks": "Thank you",
        "sign_in": "Sign in",
        "no_apps": "You have not applied yet.",
        "start": "Start an application",
        "saved": "Draft saved",
        "review": "Review before submitting",
        "fix": "Please correct this:",
        "fill": "Fill this in.",
        "add_line": "Add a budget line",
        "check": "Check and submit",
        "submit": "Submit the application",
        "changes_needed": "Changes needed",
        "change": "Change the application",
        "send_changed": "Send the changed application",
        "with_experts": "With the experts",
        "withdraw": "Withdraw the application",
        "yes_withdraw": "Yes, withdraw it",
        "withdrawn": "Withdrawn",
        "one_app": "You have 1 application.",
        "two_apps": "You have 2 applications.",
        "zone": "(Moscow, UTC+03:00)",
        "money": "30,000,000 ₽",
        "in_days": "in ",
        "lines_finding": "The budget lines do not add up to the amount asked for.",
        "reason": "Reason for withdrawing",
        "say_why": "Say why",
        "needs_you": "needs you",
    },
}


async def register_and_confirm(page: Page, site: Site, says: dict[str, str], lang: str) -> str:
    email = new_email(f"anna-{lang}")
    await page.goto(f"{site.url}/register")
    await expect(page.get_by_role("heading", level=1)).to_have_text(says["register"])
    await visit(page, f"{lang}-01-register")
    await page.locator("#f-name").fill("Анна Иванова" if lang == "ru" else "Anna Ivanova")
    await page.locator("#f-email").fill(email)
    await page.locator("#f-institution").fill(f"City Clinic {uuid.uuid4().hex[:4]}")
    await page.locator("#f-organisation_type").select_option("medical_institution")
    await page.locator("#f-password").fill(PASSWORD)
    await page.get_by_role("button", name=says["create_account"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(says["check_mail"])
    await visit(page, f"{lang}-02-check-mail")

    link = await last_link_of(site, email, "/confirm-email")
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text(says["thanks"])
    await visit(page)
    await page.get_by_role("main").get_by_role("link", name=says["sign_in"]).click()
    await page.locator("#f-email").fill(email)
    await page.locator("#f-password").fill(PASSWORD)
    await visit(page, f"{lang}-03-sign-in")
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await expect(page.get_by_text(says["no_apps"])).to_be_visible()
    await visit(page, f"{lang}-04-dashboard-empty")
    return email


async def last_link_of(site: Site, email: str, path: str) -> str:
    from tests.pages.conftest import last_link

    return await last_link(site.stack, email, path)


async def write_draft(page: Page, site: Site, says: dict[str, str], lang: str, call: str) -> str:
    """Start, type a little, reload: nothing is lost. Returns the draft's URL."""
    await page.goto(f"{site.url}/calls")
    await visit(page, f"{lang}-05-calls")
    await page.get_by_role("link", name=call).click()
    await visit(page, f"{lang}-06-call")
    await page.get_by_role("button", name=says["start"]).click()
    await page.locator("#f-title").fill(
        "ИИ-сортировка рентгенограмм" if lang == "ru" else "AI triage of X-rays"
    )
    await page.locator("#f-specialty").select_option("radiology")
    await expect(page.locator("#draft-status")).to_contain_text(says["saved"])
    draft_url = page.url
    await page.reload()
    await expect(page.locator("#f-title")).not_to_have_value("")
    await expect(page.locator("#f-specialty")).to_have_value("radiology")
    return draft_url


async def finish_and_submit(page: Page, says: dict[str, str], lang: str) -> None:
    """Errors beside their fields (focus on the first), lines added in place, then the check
    before submitting and a double click on Submit."""
    await page.locator("#f-summary").fill("Flags urgent findings for the radiologist.")
    await page.locator("#f-requested_rub").fill("30 000 000")
    await page.locator("#f-total_investment_rub").fill("250000000")
    await page.locator("#f-duration_months").fill("24")
    await page.get_by_role("button", name=says["review"]).click()
    await expect(page.get_by_text(says["fix"])).to_be_visible()
    # The first field with an error has the focus; its message is tied to it.
    focused = await page.evaluate("document.activeElement.id")
    assert focused == "f-budget_lines-0-item", focused
    described = await page.locator("#f-expected_results").get_attribute("aria-describedby")
    assert described and "f-expected_results-error" in described
    await expect(page.locator("#f-expected_results-error")).to_contain_text(says["fill"])
    await visit(page, f"{lang}-07-draft-errors")

    await page.locator("#f-budget_lines-0-item").fill("Model training")
    await page.locator("#f-budget_lines-0-amount_rub").fill("18 000 000")
    await page.get_by_role("button", name=says["add_line"]).click()
    # The new line arrives in place (htmx) with the focus in its first box.
    await expect(page.locator("#f-budget_lines-1-item")).to_be_focused()
    await page.locator("#f-budget_lines-1-item").fill("Integration")
    await page.locator("#f-budget_lines-1-year").fill("2")
    # 18 + 10 is not the 30 asked for: screening will send it back.
    await page.locator("#f-budget_lines-1-amount_rub").fill("10 000 000")
    await page.locator("#f-expected_results").fill("Urgent findings reported 30 % sooner.")
    await expect(page.locator("#draft-status")).to_contain_text(says["saved"])
    await visit(page, f"{lang}-08-draft")
    await page.get_by_role("button", name=says["review"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(says["check"])
    await expect(page.get_by_text(says["money"]).first).to_be_visible()
    await visit(page, f"{lang}-09-check-and-submit")
    await page.get_by_role("button", name=says["submit"]).dblclick()
    await page.wait_for_url("**/applications/*")


async def count_applications(stack: Stack, email: str) -> int:
    return int(
        await stack.pool.fetchval(
            "SELECT count(*) FROM applications a JOIN users u ON u.id = a.applicant_id "
            "WHERE lower(u.email) = lower($1)",
            email,
        )
    )


async def until_text(page: Page, text: str) -> None:
    """Reload until the page says `text` (screening runs in the background)."""

    async def shown() -> bool:
        await page.reload()
        return await page.get_by_text(text).count() > 0

    await eventually(shown, within=30, interval=0.5)


async def revise(page: Page, says: dict[str, str], lang: str) -> None:
    await until_text(page, says["changes_needed"])
    await expect(page.get_by_text(says["zone"]).first).to_be_visible()
    await visit(page, f"{lang}-10-changes-needed")
    await page.get_by_role("link", name=says["change"]).click()
    await expect(page.get_by_text(says["lines_finding"]).first).to_be_visible()
    await visit(page, f"{lang}-11-revision")
    await page.locator("#f-budget_lines-1-amount_rub").fill("12 000 000")
    await page.get_by_role("button", name=says["send_changed"]).click()
    await page.wait_for_url("**/applications/*")
    await until_text(page, says["with_experts"])
    await visit(page, f"{lang}-12-with-the-experts")


async def submit_another(site: Site, email: str, programme_id: str) -> str:
    """A second application, sent the API's way (the same service)."""
    found = await store_account.by_email(site.stack.pool, email)
    assert found is not None
    res = Resources(site.settings, site.stack.pool, site.stack.client)
    body = ApplicationCreate.model_validate(
        application_body(programme_id, title="Remote ECG follow-up")
    )
    submitted = await application.submit(res, account.caller_of(found), body)
    return submitted.application.id


async def withdraw(page: Page, site: Site, says: dict[str, str], lang: str, app_id: str) -> None:
    await page.goto(f"{site.url}/")
    await expect(page.get_by_text(says["two_apps"])).to_be_visible()
    await visit(page, f"{lang}-13-dashboard")
    await page.goto(f"{site.url}/applications/{app_id}")
    await page.get_by_role("link", name=says["withdraw"]).click()
    await page.get_by_role("button", name=says["yes_withdraw"]).click()
    # Without a reason: asked for one, beside the field, with the focus on it.
    await expect(page.locator("#f-reason-error")).to_contain_text(says["say_why"])
    await expect(page.locator("#f-reason")).to_be_focused()
    await visit(page, f"{lang}-14-withdraw")
    await page.locator("#f-reason").fill("We found a partner with its own funding.")
    await page.get_by_role("button", name=says["yes_withdraw"]).click()
    await page.wait_for_url(f"**/applications/{app_id}?done=withdrawn")
    await expect(page.locator(".lead .badge")).to_have_text(says["withdrawn"])
    await visit(page, f"{lang}-15-withdrawn")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_an_applicant_applies_revises_and_withdraws_in_the_browser(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    call = f"{'Конкурс' if lang == 'ru' else 'Call'} {uuid.uuid4().hex[:6]}"
    programme = await open_programme(stack, make_user, name=call)
    async with person(browser, locale=lang) as page:
        email = await register_and_confirm(page, site, says, lang)
        draft_url = await write_draft(page, site, says, lang, call)
        assert await count_applications(stack, email) == 0  # a draft is no application
        await page.goto(draft_url)
        await finish_and_submit(page, says, lang)
        assert await count_applications(stack, email) == 1  # the double click made one
        await revise(page, says, lang)

        second = await submit_another(site, email, programme["id"])
        await withdraw(page, site, says, lang, second)
    async with person(browser, locale=lang, width=360) as narrow:
        await sign_in(narrow, site, email, says)
        width = await narrow.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the dashboard is {width}px wide on a 360px screen"
        await visit(narrow, f"{lang}-16-dashboard-360px")


async def sign_in(page: Page, site: Site, email: str, says: dict[str, Any]) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(email)
    await page.locator("#f-password").fill(PASSWORD)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(f"{site.url}/")


@pytest.mark.timeout(120)
async def test_without_javascript_a_draft_is_written_saved_and_kept_across_sign_out(
    site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    """htmx only enhances: every button of the form is a plain submit that works without it."""
    says = SAYS["en"]
    call = f"Call {uuid.uuid4().hex[:6]}"
    await open_programme(stack, make_user, name=call)
    member = await with_password(stack, await make_user(Role.applicant))
    async with person(browser, locale="en", javascript=False) as page:
        await sign_in(page, site, member.email, says)
        await page.goto(f"{site.url}/calls")
        await page.get_by_role("link", name=call).click()
        await page.get_by_role("button", name=says["start"]).click()
        await page.locator("#f-title").fill("Tele-rehabilitation after stroke")
        await page.locator("#f-budget_lines-0-item").fill("Platform")
        await page.get_by_role("button", name=says["add_line"]).click()  # a whole page again
        await expect(page.locator("#f-budget_lines-1-item")).to_be_visible()
        await expect(page.locator("#f-title")).to_have_value("Tele-rehabilitation after stroke")
        # Enter in a box saves the draft: it never presses "Remove line 1", the first button.
        async with page.expect_navigation():
            await page.locator("#f-title").press("Enter")
        await expect(page.locator("#f-budget_lines-1-item")).to_be_visible()
        await expect(page.locator("#f-budget_lines-0-item")).to_have_value("Platform")
        await page.get_by_role("button", name="Remove line 1").click()
        await expect(page.locator("#f-budget_lines-0-item")).to_have_value("")
        await expect(page.locator("#f-budget_lines-1-item")).to_have_count(0)
        await page.locator("button.secondary", has_text="Save draft").click()
        # axe needs scripts; the same form is checked with them in the test above.
        await shoot(page, "en-17-draft-without-javascript")
        await page.get_by_role("button", name="Sign out").click()
        await sign_in(page, site, member.email, says)
        await expect(
            page.get_by_role("link", name="Tele-rehabilitation after stroke")
        ).to_be_visible()


@pytest.mark.timeout(60)
async def test_an_address_with_no_page_is_a_page_in_the_readers_language_but_the_api_stays_json(
    site: Site, stack: Stack, make_user: UserFactory
) -> None:
    async with site.client(headers={"accept-language": "ru"}) as stranger:
        missing = await stranger.get("/no-such-page")
        wrong_method = await stranger.delete("/sign-in")
        api = await stranger.get("/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert '<html lang="ru">' in missing.text
    assert "Такой страницы нет, или она не ваша." in missing.text
    assert missing.headers["content-security-policy"].startswith("default-src 'self'")
    assert wrong_method.status_code == 405
    assert "Так эту страницу открыть нельзя." in wrong_method.text
    assert "POST" in wrong_method.headers["allow"]
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}

    reviewer = await make_user(Role.reviewer, specialty=f"nowhere-{uuid.uuid4().hex[:6]}")
    member = await with_password(stack, reviewer)  # reads English
    async with signed_in_client(site, member) as client:
        bad_address = await client.get("/report-reviews/nothing/first")  # a report's number
        no_page = await client.get("/applications/first/nowhere")
    assert bad_address.status_code == 422
    assert "The address of this page is not valid." in bad_address.text
    assert no_page.status_code == 404
    assert "There is no such page, or it is not yours." in no_page.text
    assert '<html lang="en">' in no_page.text
