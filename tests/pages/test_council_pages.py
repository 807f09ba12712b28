"""Council members' work in the browser, in Russian and in English: the sessions I sit on, the
agenda ranked by score with the reviews (never the reviewers' names), a vote refused beside its
field for an amount above the request and then cast, another member's vote appearing in the
tally without a reload, a vote cast without JavaScript, and a vote refused inline once the
chair has closed the session. A council member who is not in the session reads the agenda and
is told why it cannot vote. axe checks every page; screenshots go to docs/screenshots/."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from grantflow.store.account import set_preferences
from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory
from tests.pages.conftest import (
    Member,
    Site,
    csrf,
    person,
    shoot,
    signed_in_client,
    visit,
    with_password,
)
from tests.test_council import Council

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright

SPACE = r"\s"  # money is grouped and ends with no-break spaces
ROUBLES = SPACE + "₽"
MILLIONS_30 = SPACE.join(["30", "000", "000"]) + ROUBLES
SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "quorum": "когда проголосуют 2 члена совета",
        "sign_in": "Войти",
        "sessions": "Мои заседания совета",
        "open_one": "1 заседание открыто для ваших голосов.",
        "over": "одобрить не больше запрошенных " + MILLIONS_30,
        "say_why": "Объясните",
        "recorded": "Ваш голос учтён.",
        "mine": "Ваш голос:",
        "approve_1": "1 за одобрение",
        "approve_2": "2 за одобрение",
        "reject_1": "1 за отклонение",
        "cast": "Проголосовать",
        "change": "Изменить мой голос",
        "closed": "Заседание закрыто: голоса больше не принимаются.",
        "decided": "Решено:",
        "left": "Остаток бюджета" + SPACE + "*" + MILLIONS_30,
        "reject_2": "2 за отклонение",
        "not_member": "Вы не член этого заседания",
    },
    "en": {
        "quorum": "once 2 members have voted",
        "sign_in": "Sign in",
        "sessions": "My council sessions",
        "open_one": "1 session is open for your votes.",
        "over": "At most the 30,000,000" + ROUBLES + " asked for",
        "say_why": "Say why",
        "recorded": "Your vote is recorded.",
        "mine": "Your vote:",
        "approve_1": "1 to approve",
        "approve_2": "2 to approve",
        "reject_1": "1 to reject",
        "cast": "Cast my vote",
        "change": "Change my vote",
        "closed": "The session is closed: it takes no more votes.",
        "decided": "Decided:",
        "left": "Budget left" + SPACE + "*30,000,000" + ROUBLES,
        "reject_2": "2 to reject",
        "not_member": "You are not a member of this session",
    },
}


async def sign_in(page: Page, site: Site, member: Member, says: dict[str, str]) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(f"{site.url}/council")


async def in_language(stack: Stack, user: User, lang: str) -> Member:
    member = await with_password(stack, user)
    await set_preferences(stack.pool, uuid.UUID(user.id), locale=lang)
    return member


async def agenda(council: Council, applicant: User) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two reviewed applications of 30 000 000 ₽ each under a budget of 55 000 000 ₽, for three
    members of whom two make the quorum."""
    await council.setup(members=3, budget_rub=55_000_000, council_quorum=2)
    low = await council.reviewed(applicant, 6, title="Home dialysis coaching")
    high = await council.reviewed(applicant, 9, title="AI triage of chest X-rays")
    return high, low


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_council_members_vote_on_the_agenda_and_see_the_tally(
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
    high, low = await agenda(council, applicant)
    session = await council.session(f"Council {lang}")
    first, second, third = council.members
    me = await in_language(stack, first, lang)
    offline = await in_language(stack, third, lang)

    async with person(browser, locale=lang) as page:
        await sign_in(page, site, me, says)
        await expect(page.get_by_role("heading", level=1)).to_have_text(says["sessions"])
        await expect(page.get_by_text(says["open_one"])).to_be_visible()
        await visit(page, f"{lang}-council-01-sessions")

        # The agenda, best score first, the reviews without their authors.
        await page.get_by_role("link", name=f"Council {lang}").click()
        items = page.locator("section.agenda-item h2")
        await expect(items).to_have_text(
            ["1. AI triage of chest X-rays", "2. Home dialysis coaching"]
        )
        await expect(page.get_by_text("Sound plan.").first).to_be_visible()
        for reviewer in council.reviewers:
            await expect(page.get_by_text(reviewer.name)).to_have_count(0)
        # The quorum in words with its plural; each item names the applicant's institution as
        # people know it, not by its id.
        await expect(page.get_by_role("main")).to_contain_text(says["quorum"])
        institution = await stack.pool.fetchval(
            "SELECT name FROM institutions WHERE id = $1", applicant.institution_id
        )
        item = page.locator("section.agenda-item").first
        await expect(item).to_contain_text(institution)
        await expect(item).not_to_contain_text(str(applicant.institution_id))
        await visit(page, f"{lang}-council-02-agenda")

        # Approving more than asked is refused beside the amount; the reason stays as typed.
        top = page.locator("#item-1")
        await top.locator("#v1-choice-approve").check()
        await top.locator("#v1-amount").fill("40 000 000")
        await top.locator("#v1-reason").fill("Strong reviews; the integration is costed well.")
        await top.get_by_role("button", name=says["cast"]).click()
        await expect(page.locator("#v1-amount-error")).to_contain_text(re.compile(says["over"]))
        await expect(page.locator("#v1-reason")).to_have_value(
            "Strong reviews; the integration is costed well."
        )
        await visit(page, f"{lang}-council-03-refused")
        await page.locator("#v1-amount").fill("25 000 000")
        await page.locator("#item-1").get_by_role("button", name=says["cast"]).click()
        await expect(page.locator("#item-1").get_by_text(says["recorded"])).to_be_visible()
        await expect(page.locator("#item-1").get_by_text(says["mine"])).to_be_visible()
        await expect(page.locator("#status-1")).to_contain_text(says["approve_1"])

        # Another member votes elsewhere: the tally moves without a reload.
        voted = await council.vote(session, second, high, "approve")
        assert voted.status_code == 200, voted.text
        await expect(page.locator("#status-1")).to_contain_text(says["approve_2"], timeout=15_000)

        # A vote without a reason is asked for one, beside the field.
        await page.locator("#v2-choice-reject").check()
        await page.locator("#item-2").get_by_role("button", name=says["cast"]).click()
        await expect(page.locator("#v2-reason-error")).to_contain_text(says["say_why"])
        await expect(page.locator("#v2-reason")).to_be_focused()
        await page.locator("#v2-reason").fill("The evidence for home use is thin.")
        await page.locator("#item-2").get_by_role("button", name=says["cast"]).click()
        await expect(page.locator("#status-2")).to_contain_text(says["reject_1"])
        await visit(page, f"{lang}-council-04-tally")

        # Without JavaScript: the form posts, the page comes back with the vote recorded.
        async with person(browser, locale=lang, javascript=False) as plain:
            await sign_in(plain, site, offline, says)
            await plain.goto(f"{site.url}/council/{session['session_id']}")
            await plain.locator("#v2-choice-reject").check()
            await plain.locator("#v2-reason").fill("Agree: not this year.")
            await plain.locator("#item-2").get_by_role("button", name=says["cast"]).click()
            await expect(plain.locator("#item-2").get_by_text(says["recorded"])).to_be_visible()
            await expect(plain.locator("#status-2")).to_contain_text(says["reject_2"])
            await shoot(plain, f"{lang}-council-06-without-javascript")  # axe needs scripts

        # The chair closes the session while my page is open: a change of vote is refused.
        closed = await council.close(session)
        assert closed.status_code == 200, closed.text
        await page.locator("#item-1 summary").click()  # my vote is in: its form is folded
        await page.locator("#v1-reason").fill("On reflection, the full amount.")
        await page.locator("#v1-amount").fill("")
        await page.locator("#item-1").get_by_role("button", name=says["change"]).click()
        await expect(page.locator("#item-1").get_by_role("alert")).to_have_text(says["closed"])
        # ...and the item comes back without its form: nothing more can be cast on it.
        await expect(page.locator("#item-1").get_by_role("button")).to_have_count(0)
        await page.reload()
        await expect(page.locator("#status-1")).to_contain_text(says["decided"])
        await expect(page.get_by_role("button", name=says["change"])).to_have_count(0)
        await expect(page.locator("#standing")).to_contain_text(re.compile(says["left"]))
        await visit(page, f"{lang}-council-05-closed")
    decided = {d["application_id"]: d for d in closed.json()}
    assert decided[high["id"]]["outcome"] == "approved"
    assert decided[high["id"]]["amount_rub"] == 25_000_000
    assert decided[low["id"]]["outcome"] == "rejected"


@pytest.mark.timeout(180)
async def test_a_council_member_outside_the_session_is_told_why_it_cannot_vote(
    site: Site, stack: Stack, admin: User, make_user: UserFactory, applicant: User
) -> None:
    council = Council(stack, admin, make_user)
    high, _ = await agenda(council, applicant)
    session = await council.session("April session")
    outsider = await with_password(stack, await make_user(Role.council))
    url = f"/council/{session['session_id']}"
    async with signed_in_client(site, outsider) as client:
        listed = (await client.get("/council")).text
        assert "April session" not in listed and "You sit on no council session yet" in listed
        page = (await client.get(url)).text
        assert "You are not a member of this session" in page
        assert "AI triage of chest X-rays" in page and "Cast my vote" not in page
        # A vote sent all the same is refused by the session, said on the page.
        body = {
            "application_id": high["id"],
            "choice": "approve",
            "reason": "Let me in.",
            "csrf_token": await csrf(client, url),
        }
        refused = await client.post(f"{url}/votes", data=body)
    assert refused.status_code == 200
    assert "You are not a member of this session: only members vote." in refused.text
    count = await stack.pool.fetchval(
        "SELECT count(*) FROM votes WHERE session_id = $1", uuid.UUID(session["session_id"])
    )
    assert count == 0
