"""One whole submission by keyboard alone, as a person who cannot use a mouse works: Tab to
move, typing to fill, Enter or Space to press; from the sign-in page to the submitted
application. In English (the Russian pages are walked by mouse in test_applicant.py); axe
checks every page on the way."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser, Page, expect

from schemas.common import Role
from tests.conftest import SESSION, Stack, UserFactory
from tests.pages.conftest import Site, open_programme, person, visit, with_password

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright


async def tab_to(page: Page, selector: str, limit: int = 120) -> None:
    """Press Tab until `selector` has the focus; fails if the keyboard cannot reach it."""
    target = page.locator(selector).first
    for _ in range(limit):
        if await target.evaluate("el => el === document.activeElement"):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reaches {selector}")


async def type_into(page: Page, selector: str, text: str) -> None:
    await tab_to(page, selector)
    await page.keyboard.type(text)


@pytest.mark.timeout(240)
async def test_an_applicant_signs_in_writes_and_submits_an_application_by_keyboard_alone(
    site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    call = f"Keyboard call {uuid.uuid4().hex[:6]}"
    await open_programme(stack, make_user, name=call)
    member = await with_password(stack, await make_user(Role.applicant))
    async with person(browser, locale="en") as page:
        await page.goto(f"{site.url}/sign-in")
        await visit(page)
        await type_into(page, "#f-email", member.email)
        await type_into(page, "#f-password", member.password)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{site.url}/")
        await visit(page)

        await tab_to(page, 'nav a[href="/calls"]')
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{site.url}/calls")
        await tab_to(page, f'main a:text-is("{call}")')
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{site.url}/calls/*")
        await visit(page)
        await tab_to(page, 'main button:has-text("Start an application")')
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{site.url}/drafts/*")

        await type_into(page, "#f-title", "Voice notes for ward rounds")
        await tab_to(page, "#f-specialty")
        await page.keyboard.type("radiology")  # a select picks the option typed
        await expect(page.locator("#f-specialty")).to_have_value("radiology")
        await type_into(page, "#f-summary", "Doctors dictate; the record fills itself.")
        await type_into(page, "#f-requested_rub", "30 000 000")
        await type_into(page, "#f-total_investment_rub", "250 000 000")
        await type_into(page, "#f-duration_months", "24")
        await type_into(page, "#f-budget_lines-0-item", "Speech model and integration")
        await type_into(page, "#f-budget_lines-0-amount_rub", "30 000 000")
        await type_into(page, "#f-expected_results", "Ten minutes a round back to patients.")
        await expect(page.locator("#draft-status")).to_contain_text("Draft saved")
        await visit(page)
        await tab_to(page, 'button:has-text("Review before submitting")')
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Check and submit")
        await visit(page)

        await tab_to(page, 'button:has-text("Submit the application")')
        await page.keyboard.press("Space")
        await page.wait_for_url("**/applications/*")
        await expect(page.get_by_text("Your application is submitted.")).to_be_visible()
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Voice notes for ward rounds"
        )
        await visit(page)
    submitted = await stack.pool.fetch(
        "SELECT content->>'title' AS title, requested_rub FROM applications "
        "WHERE applicant_id = $1",
        uuid.UUID(member.user.id),
    )
    assert [(r["title"], r["requested_rub"]) for r in submitted] == [
        ("Voice notes for ward rounds", 30_000_000)
    ]
