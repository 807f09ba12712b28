"""One application's whole life in the browser, registration to the closed project, every
role signing in as itself, through the pages alone: the admin creates the call through the
form (second-scale durations) and invites the experts, the council member and the clinic's
coordinator, who set their passwords from the e-mailed link; the applicant registers, confirms
the e-mail, drafts, submits, revises; an expert accepts and reviews; the admin opens a council
session, the member votes, the admin decides and closes it; the applicant accepts the
agreement; the pilot is planned, the clinic accepts and reports its metrics, the other expert
evaluates, the admin decides; the applicant sends the progress and final reports, which the
admin accepts, closing the project. axe checks every page visited.

English only: every page here is also driven in Russian by the per-role tests
(test_applicant, test_agreement_pages, test_reviewer, test_council_pages, test_coordinator,
test_admin_manage)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, eventually
from tests.pages import test_applicant
from tests.pages.conftest import (
    PASSWORD,
    Member,
    Site,
    last_link,
    new_email,
    person,
    visit,
)
from tests.pages.test_admin_manage import SAYS as ADMIN_SAYS
from tests.pages.test_admin_manage import an_admin, sign_in
from tests.pages.test_agreement_pages import accept_agreement, send_report
from tests.pages.test_applicant import SAYS as APPLICANT_SAYS
from tests.pages.test_applicant import finish_and_submit, register_and_confirm, revise
from tests.test_review import reaches

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright

MOSCOW = ZoneInfo("Europe/Moscow")
TITLE = "AI triage of X-rays"  # what finish_and_submit's draft is called in English


def local(at: datetime) -> str:
    """A moment as the admin's datetime-local box takes it (the pages show Moscow time)."""
    return at.astimezone(MOSCOW).strftime("%Y-%m-%dT%H:%M")


async def create_call(page: Page, site: Site, name: str, specialty: str) -> str:
    """The call through the admin's form: open now, one review and one vote needed, a
    project year and a report period of about a minute. Returns the programme's id."""
    await page.goto(f"{site.url}/admin/programmes/new")
    now = datetime.now(MOSCOW)
    await page.locator("#f-name").fill(name)
    await page.locator("#f-budget_rub").fill("100 000 000")
    await page.locator("#f-max_grant_rub").fill("50 000 000")
    await page.locator("#f-specialties").fill(specialty)
    await page.locator("#f-intake_opens").fill(local(now - timedelta(minutes=5)))
    await page.locator("#f-intake_closes").fill(local(now + timedelta(hours=2)))
    for key in ("tranche_interval", "report_interval"):
        await page.locator(f"#f-{key}-days").fill("0")
        await page.locator(f"#f-{key}-hours").fill("0.0167")  # a minute
    await page.locator("#f-reviews_required").fill("1")
    await page.locator("#f-council_quorum").fill("1")
    await visit(page)
    await page.get_by_role("button", name=ADMIN_SAYS["en"]["create"], exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/programmes/[0-9a-f-]{36}\?done=created$"))
    await visit(page)
    return page.url.split("/")[-1].split("?")[0]


async def invite(
    page: Page,
    browser: Browser,
    site: Site,
    name: str,
    role: Role,
    institution: str = "",
    specialty: str = "",
) -> Member:
    """The admin invites a person; the person sets a password from the e-mailed link."""
    email = new_email(role.value)
    await page.goto(f"{site.url}/admin/users/new")
    await page.locator("#f-name").fill(name)
    await page.locator("#f-email").fill(email)
    await page.locator("#f-role").select_option(role.value)
    await page.locator("#f-institution").fill(institution)
    await page.locator("#f-specialty").fill(specialty)
    await page.locator("#f-locale").select_option("en")
    await visit(page)
    await page.get_by_role("button", name=ADMIN_SAYS["en"]["invite"]).click()
    await page.wait_for_url("**/admin/users?done=invited")

    link = await last_link(site.stack, email, "/set-password")
    async with person(browser, locale="en") as theirs:
        await theirs.goto(link)
        await visit(theirs)
        await theirs.locator("#f-password").fill(PASSWORD)
        await theirs.locator("#f-password_again").fill(PASSWORD)
        await theirs.get_by_role("button", name=ADMIN_SAYS["en"]["save_password"]).click()
        await theirs.wait_for_url("**/sign-in?password=set")
    return Member(User("", name, role, None, ""), email)


async def account(stack: Stack, email: str) -> tuple[str, str]:
    """A person's id and institution's id, as the admin's user page shows them."""
    row = await stack.pool.fetchrow(
        "SELECT id, institution_id FROM users WHERE lower(email) = lower($1)", email
    )
    assert row is not None, email
    return str(row["id"]), str(row["institution_id"])


async def offered_expert(stack: Stack, application_id: str) -> str:
    """The e-mail of the expert the workflow offered the review to (of the two, either)."""

    async def offered() -> str | None:
        found = await stack.pool.fetchval(
            "SELECT u.email FROM review_tasks t JOIN users u ON u.id = t.reviewer_id "
            "WHERE t.application_id = $1",
            uuid.UUID(application_id),
        )
        return str(found) if found else None

    found: str = await eventually(offered, within=30, interval=0.2)
    return found


async def until_shown(page: Page, selector: str, within: float = 30) -> None:
    """Reload until `selector` is on the page (the workflows move in the background)."""

    async def shown() -> bool:
        await page.reload()
        return await page.locator(selector).count() > 0

    await eventually(shown, within=within, interval=0.5)


async def applicant_signs_in(page: Page, site: Site, email: str) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(email)
    await page.locator("#f-password").fill(PASSWORD)
    await page.get_by_role("main").get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{site.url}/")


async def unpictured(page: Page, name: str | None = None) -> None:
    await visit(page)


@pytest.mark.timeout(300)
async def test_one_application_from_registration_to_the_closed_project(
    site: Site,
    stack: Stack,
    make_user: UserFactory,
    browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    says = ADMIN_SAYS["en"]
    # The applicant's helpers still run axe on every page; their pictures stay test_applicant's.
    monkeypatch.setattr(test_applicant, "visit", unpictured)
    specialty = f"radiology-{uuid.uuid4().hex[:6]}"  # the two invited experts are its only ones
    call = f"Call for a whole life {uuid.uuid4().hex[:6]}"
    admin = await an_admin(stack, make_user, "en")
    tag = uuid.uuid4().hex[:4]

    async with person(browser, locale="en") as office:
        await sign_in(office, site, admin, says)
        programme_id = await create_call(office, site, call, specialty)
        institute = f"Expert Institute {tag}"
        experts = [
            await invite(
                office, browser, site, f"{name} {tag}", Role.reviewer, institute, specialty
            )
            for name in ("Vera Expert", "Ivan Expert")
        ]
        member = await invite(office, browser, site, f"Pavel Council {tag}", Role.council)
        coordinator = await invite(
            office, browser, site, f"Nina Coordinator {tag}", Role.coordinator, f"Clinic {tag}"
        )

        # The applicant registers, confirms the e-mail, drafts, submits and revises.
        async with person(browser, locale="en") as page:
            email = await register_and_confirm(page, site, APPLICANT_SAYS["en"], "en")
            await page.goto(f"{site.url}/calls")
            await page.get_by_role("link", name=call).click()
            await page.get_by_role("button", name=APPLICANT_SAYS["en"]["start"]).click()
            await page.locator("#f-title").fill(TITLE)
            await page.locator("#f-specialty").select_option(specialty)
            await finish_and_submit(page, APPLICANT_SAYS["en"], "en")
            application_id = page.url.split("/")[-1].split("?")[0]
            await revise(page, APPLICANT_SAYS["en"], "en")  # screening found the lines short

        # The expert offered the review accepts it and reviews.
        reviewer_email = await offered_expert(stack, application_id)
        reviewer = next(e for e in experts if e.email == reviewer_email)
        evaluator = next(e for e in experts if e.email != reviewer_email)
        async with person(browser, locale="en") as page:
            await sign_in(page, site, reviewer, says)
            await page.get_by_role("link", name=TITLE).click()
            await visit(page)
            await page.locator("#f-no_conflict").check()
            await page.get_by_role("button", name="Accept the task").click()
            await page.wait_for_url("**/review?done=accepted")
            await page.locator("#f-score_clinical_value").fill("9")
            await page.locator("#f-score_novelty").fill("8")
            await page.locator("#f-score_feasibility").fill("8")
            await page.locator("#f-recommendation").select_option("fund")
            await page.locator("#f-comments").fill("A real need; the plan is sound.")
            await visit(page)
            await page.get_by_role("button", name="Check before submitting").click()
            await visit(page)
            await page.get_by_role("button", name="Submit the review").click()
            await page.wait_for_url("**?done=submitted")
            await visit(page)
        await reaches(stack, admin.user, application_id, "reviewed")

        # The admin opens a council session with its one member.
        await office.goto(f"{site.url}/admin/programmes/{programme_id}")
        await office.get_by_role("link", name=says["open_session"]).click()
        for box in await office.locator("input[name=member_ids]").all():
            await box.uncheck()
        await office.get_by_label(member.user.name, exact=True).check()
        await office.locator("#f-name").fill("December session")
        await visit(office)
        await office.get_by_role("button", name=says["open"]).click()
        await office.wait_for_url(re.compile(r"/admin/sessions/[0-9a-f-]{36}\?done=opened$"))
        session_url = office.url.split("?")[0]

        # The council member votes on the agenda.
        async with person(browser, locale="en") as page:
            await sign_in(page, site, member, says)
            await page.get_by_role("link", name="December session").click()
            await page.locator("#v1-choice-approve").check()
            await page.locator("#v1-reason").fill("Strong review; a modest request.")
            await visit(page)
            await page.locator("#item-1").get_by_role("button", name="Cast my vote").click()
            await expect(page.locator("#status-1")).to_contain_text("1 to approve")
            await visit(page, "en-whole-life-01-council-vote")

        # The admin decides the item and closes the session.
        await office.goto(session_url)
        item = office.locator(f"#item-{application_id}")
        await item.get_by_role("button", name=re.compile(says["decide"])).click()
        await office.wait_for_url("**?done=decided*")
        await expect(office.locator(f"#item-{application_id}")).to_contain_text(says["approved"])
        await visit(office)
        await office.get_by_role("link", name=says["close"]).click()
        await visit(office)
        await office.get_by_role("button", name=says["yes_close"]).click()
        await office.wait_for_url("**?done=closed")
        await visit(office)

        # The applicant reads the agreement the approval offers, and accepts it.
        async with person(browser, locale="en") as page:
            await applicant_signs_in(page, site, email)
            await page.goto(f"{site.url}/applications/{application_id}")
            await until_shown(page, f"a[href='/applications/{application_id}/agreement']")
            await page.get_by_role("link", name="Read and answer the agreement").click()
            await expect(page.get_by_role("main")).to_contain_text("Offered")
            await accept_agreement(page, site, application_id, "Accept the agreement")
            await expect(page.locator("#tranche-1")).to_contain_text("Paid")

        # The admin plans the pilot at the coordinator's clinic, about a second long.
        _, clinic_id = await account(stack, coordinator.email)
        pilot_url = f"{site.url}/admin/applications/{application_id}/pilot"
        await office.goto(pilot_url)
        await office.locator("#f-sites-0-clinic_id").fill(clinic_id)
        start = datetime.now(MOSCOW) - timedelta(minutes=1)
        await office.locator("#f-sites-0-starts_at").fill(local(start))
        await office.locator("#f-sites-0-duration-days").fill("0")
        await office.locator("#f-sites-0-duration-hours").fill("0.0003")
        await office.locator("#f-sites-0-metrics").fill("patients; patients; 400")
        await visit(office)
        await office.get_by_role("button", name=says["plan"]).click()
        await office.wait_for_url(f"{pilot_url}?done=planned")

        # The coordinator accepts the site and, its period over, reports the metrics.
        async with person(browser, locale="en") as page:
            await sign_in(page, site, coordinator, says)
            await until_shown(page, f"a:has-text('{TITLE}')")
            await page.get_by_role("link", name=TITLE).first.click()
            await visit(page)
            await page.get_by_role("button", name="Accept the pilot").click()
            await page.wait_for_url("**?done=accepted")
            await until_shown(page, "#f-m_patients")
            await page.locator("#f-m_patients").fill("450")
            await page.locator("#f-comments").fill("Two radiologists used it every day.")
            await visit(page)
            await page.get_by_role("button", name="Send the report").click()
            await page.wait_for_url("**?done=reported")
            await visit(page, "en-whole-life-02-site-reported")

        # The other expert, independent of the review, evaluates the pilot.
        async with person(browser, locale="en") as page:
            await sign_in(page, site, evaluator, says)
            await page.goto(f"{site.url}/evaluations/{application_id}")
            await until_shown(page, "input[name=recommendation][value=implement]")
            await page.locator("input[name=recommendation][value=implement]").check()
            await page.locator("#f-comments").fill("450 patients against 400: the target is met.")
            await visit(page)
            await page.get_by_role("button", name="Send the evaluation").click()
            await expect(page.get_by_role("status")).to_contain_text("Your evaluation is sent.")
            await visit(page)

        # The admin decides the pilot: implement.
        await office.goto(pilot_url)
        await until_shown(office, "#f-decision")
        await office.locator("#f-decision").select_option("implement")
        await office.locator("#f-reason").fill("The evaluation recommends it.")
        await office.get_by_role("button", name=says["record_decision"]).click()
        await office.wait_for_url(f"{pilot_url}?done=decided")
        await visit(office)
        await reaches(stack, admin.user, application_id, "reporting")

        # The applicant sends the progress report, then the final one.
        async with person(browser, locale="en") as page:
            await applicant_signs_in(page, site, email)
            await send_report(page, site, application_id, 1, "Quarter one: deployed.")
            await send_report(page, site, application_id, 2, "Final: in routine use.")

        # The admin accepts the progress report, then the final one, closing the project.
        await office.goto(f"{site.url}/admin/applications/{application_id}/reports")
        first = office.locator("#report-1")
        await first.get_by_role("textbox").fill("Milestones met.")
        await first.get_by_role("button").click()
        await office.wait_for_url("**/reports?done=accepted")
        final = office.locator("#report-2")
        await final.get_by_role("textbox").fill("In routine use at the clinic.")
        await final.get_by_role("combobox").select_option("implemented")
        await visit(office)
        await final.get_by_role("button").click()
        await visit(office)
        await office.get_by_role("button", name=says["yes_close_project"]).click()
        await office.wait_for_url("**/reports?done=accepted")
        await reaches(stack, admin.user, application_id, "closed")
        await office.goto(f"{site.url}/admin/applications/{application_id}")
        await expect(office.get_by_role("main")).to_contain_text("Closed")
        await visit(office, "en-whole-life-03-admin-closed")

    # The applicant sees the project closed on the application's own page.
    async with person(browser, locale="en") as page:
        await applicant_signs_in(page, site, email)
        await page.goto(f"{site.url}/applications/{application_id}")
        await expect(page.locator(".lead .badge")).to_have_text("Completed")
        await expect(page.get_by_text("the final report was accepted")).to_be_visible()
        await visit(page, "en-whole-life-04-applicant-completed")
    stage = await stack.pool.fetchval(
        "SELECT stage FROM applications WHERE id = $1", uuid.UUID(application_id)
    )
    assert stage == "closed"
