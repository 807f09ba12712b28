"""An admin's work in the browser, in Russian and in English: the dashboard says what needs
attention and links to the list that counts it; an overdue review found from there gets its
deadline moved (a reason, a confirmation) and the move is in the history at once; a programme's
pictures carry their figures as tables; the list's filters, counts and CSV agree. axe checks
every page; screenshots go to docs/screenshots/."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from grantflow.pages import charts
from grantflow.services.dashboard import funnel
from grantflow.store.account import set_preferences
from schemas.common import Role
from tests.conftest import SESSION, Stack, UserFactory
from tests.pages.conftest import (
    Member,
    Site,
    csrf,
    open_programme,
    person,
    shoot,
    signed_in_client,
    visit,
    with_password,
)
from tests.pages.test_reviewer import apply, task_of

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright

SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "sign_in": "Войти",
        "dashboard": "Панель",
        "move": "Перенести срок",
        "continue": "Продолжить",
        "say_why": "Объясните",
        "confirm": "Да, перенести срок",
        "moved": "Срок рецензии перенесён",
        "done": "Готово: срок перенесён.",
        "completed": "Завершена",
        "pilot": "Апробация",
        "show": "Показать",
        "its_applications": "Её заявки",
        "next_page": "Следующая страница",
    },
    "en": {
        "sign_in": "Sign in",
        "dashboard": "Dashboard",
        "move": "Move a deadline",
        "continue": "Continue",
        "say_why": "Say why",
        "confirm": "Yes, move the deadline",
        "moved": "Review deadline moved",
        "done": "Done: the deadline is moved.",
        "completed": "Completed",
        "pilot": "Pilot",
        "show": "Show",
        "its_applications": "Its applications",
        "next_page": "Next page",
    },
}


async def admin_member(stack: Stack, make_user: UserFactory, lang: str, name: str) -> Member:
    member = await with_password(stack, await make_user(Role.admin, name=name))
    await set_preferences(stack.pool, uuid.UUID(member.user.id), locale=lang)
    return member


async def sign_in(page: Page, site: Site, member: Member, says: dict[str, str]) -> None:
    """An admin's start is the dashboard."""
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(f"{site.url}/admin")
    await expect(page.get_by_role("heading", level=1)).to_have_text(says["dashboard"])


async def look(page: Page, javascript: bool, name: str | None = None) -> None:
    """axe needs JavaScript in the page: without it, only the screenshot."""
    if javascript:
        await visit(page, name)
    elif name:
        await shoot(page, name)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("lang", "javascript"), [("ru", True), ("en", False)])
async def test_an_admin_finds_an_overdue_review_and_moves_its_deadline(
    lang: str, javascript: bool, site: Site, stack: Stack, make_user: UserFactory,
    browser: Browser,
) -> None:  # fmt: skip
    says = SAYS[lang]
    spec = f"urology-{uuid.uuid4().hex[:6]}"
    programme = await open_programme(stack, make_user, specialties=[spec])
    reviewer = await make_user(Role.reviewer, specialty=spec, name="Dr. Orlova")
    title = f"Bladder scan {uuid.uuid4().hex[:4]}"
    application_id = await apply(stack, make_user, programme["id"], spec, title)
    task_id = await task_of(stack, reviewer, application_id)
    # The record says the deadline passed (the workflow's own timer is days away).
    await stack.pool.execute(
        "UPDATE review_tasks SET deadline = now() - interval '1 day' WHERE id = $1",
        uuid.UUID(task_id),
    )
    me = await admin_member(stack, make_user, lang, "Irina Admin")

    async with person(browser, locale=lang, javascript=javascript) as page:
        await sign_in(page, site, me, says)
        await page.locator("#tile-overdue_reviews").click()
        await page.wait_for_url("**/admin/applications?stage=under_review&overdue=1")
        await look(page, javascript)
        # Newest first: the overdue one just made is on the first page.
        await page.get_by_role("link", name=title).click()
        await page.wait_for_url(f"**/admin/applications/{application_id}")
        await look(page, javascript)

        # Nothing typed is lost when the reason is missing: the error sits beside its box.
        form = page.locator("#act-deadline")
        await form.locator("summary").click()
        await form.locator("#f-deadline-kind").select_option(f"review:{task_id}")
        await form.locator("#f-deadline-until").fill("2031-01-15T18:00")
        await form.get_by_role("button", name=says["continue"]).click()
        await expect(page.locator("#f-deadline-reason-error")).to_contain_text(says["say_why"])
        await expect(page.locator("#f-deadline-until")).to_have_value("2031-01-15T18:00")
        await expect(page.locator("#f-deadline-kind")).to_have_value(f"review:{task_id}")
        await look(page, javascript)
        await page.locator("#f-deadline-reason").fill("The reviewer is in hospital this week.")
        await page.locator("#act-deadline").get_by_role("button", name=says["continue"]).click()

        # The confirmation says what is about to happen; confirming does it.
        await expect(page.get_by_text("Dr. Orlova")).to_be_visible()
        await expect(page.get_by_text("(Москва" if lang == "ru" else "(Moscow")).to_be_visible()
        await look(page, javascript, f"{lang}-admin-03-confirm")
        await page.get_by_role("button", name=says["confirm"]).click()
        await page.wait_for_url(f"**/admin/applications/{application_id}?done=deadline*")
        await expect(page.get_by_text(says["done"])).to_be_visible()
        history = page.locator("#history")
        moved = history.locator("li", has_text=says["moved"])
        await expect(moved).to_contain_text("The reviewer is in hospital this week.")
        await expect(moved).to_contain_text("Irina Admin")
        await look(page, javascript, f"{lang}-admin-04-application")

        # The workflow events in the engine's words, when asked: in place on opening (htmx),
        # or on their own page by the link without JavaScript.
        await history.locator("#events summary").click()
        if not javascript:
            await history.locator("#events-list a").click()
            await page.wait_for_url(f"**/admin/applications/{application_id}/events")
        started = page.locator("ol.history li", has_text="workflow Application started")
        await expect(started).to_have_count(1)
        await look(page, javascript)

    if not javascript:  # axe on the page as it is now, in a browser that runs it
        async with person(browser, locale=lang) as page:
            await sign_in(page, site, me, says)
            await page.goto(f"{site.url}/admin/applications/{application_id}")
            await visit(page)

    deadline = await stack.pool.fetchval(
        "SELECT deadline FROM review_tasks WHERE id = $1", uuid.UUID(task_id)
    )
    assert deadline == datetime(2031, 1, 15, 15, 0, tzinfo=UTC)  # 18:00 in Moscow


# --- a programme with a past: its pictures, its list ------------------------------------------


@dataclass
class Seeded:
    programme: dict[str, Any]
    ids_by_stage: dict[str, list[str]]
    clinics: dict[str, str]  # name -> id


COPIES = {"closed": 4, "reporting": 2, "piloting": 3, "rejected": 5, "ineligible": 2}
COPY_SQL = """
INSERT INTO applications
SELECT (jsonb_populate_record(NULL::applications, to_jsonb(a) || jsonb_build_object(
    'id', $2::uuid, 'workflow_id', 'seeded-' || $2::text, 'stage', $3::text,
    'outcome', $4::text, 'idempotency_key', NULL, 'flag_reason', NULL, 'flagged_at', NULL,
    'deadline', NULL, 'content', a.content || jsonb_build_object('title', $5::text),
    'submitted_at', now() - make_interval(mins => $6::int)))).*
FROM applications a WHERE a.id = $1"""
LEDGER = [  # days ago, kind, amount
    (3, "reserve", 500_000_000),
    (3, "reserve", 500_000_000),
    (3, "reserve", 300_000_000),
    (2, "reserve", 400_000_000),
    (2, "disburse", 200_000_000),
    (1, "release", 300_000_000),
    (1, "disburse", 250_000_000),
]
SITES = [("City Clinic No. 12", ["running", "running", "completed"]),
         ("Children's Hospital No. 3", ["proposed", "declined"])]  # fmt: skip


async def seed(stack: Stack, make_user: UserFactory) -> Seeded:
    """A programme whose applications went everywhere: copies of one real application's row
    in later stages (their counters kept by the trigger), money moved over three days, pilot
    sites in two clinics, one project of four implemented."""
    spec = f"ophthalmology-{uuid.uuid4().hex[:6]}"
    programme = await open_programme(stack, make_user, specialties=[spec])
    source = await apply(stack, make_user, programme["id"], spec, "The first one")
    ids_by_stage: dict[str, list[str]] = {}
    n = 0
    for stage, count in COPIES.items():
        for i in range(count):
            n += 1
            new = uuid.uuid4()
            outcome = (
                ("implemented" if i == 0 else "not_implemented") if stage == "closed" else None
            )
            await stack.pool.execute(
                COPY_SQL, uuid.UUID(source), new, stage, outcome, f"{stage} {i + 1}", n
            )
            ids_by_stage.setdefault(stage, []).append(str(new))
    pid = uuid.UUID(programme["id"])
    approved = ids_by_stage["closed"][0]
    for k, (days, kind, amount) in enumerate(LEDGER):
        await stack.pool.execute(
            "INSERT INTO ledger_entries (key, programme_id, application_id, kind, amount_rub, "
            "reason, at) VALUES ($1, $2, $3, $4, $5, 'seeded', now() - make_interval(days => $6))",
            f"seeded-{pid}-{k}", pid, uuid.UUID(approved), kind, amount, days,
        )  # fmt: skip
    clinics = {}
    piloted = ids_by_stage["piloting"][0]
    seq = 0
    for name, statuses in SITES:
        clinic_id = f"clinic-{uuid.uuid4().hex[:8]}"
        clinics[name] = clinic_id
        await stack.pool.execute(
            "INSERT INTO institutions (id, name, organisation_type) "
            "VALUES ($1, $2, 'medical_institution')",
            clinic_id, name,
        )  # fmt: skip
        for status in statuses:
            seq += 1
            await stack.pool.execute(
                "INSERT INTO pilot_sites (id, application_id, programme_id, seq, round, "
                "clinic_id, status, version, starts_at, ends_at, report_by, metrics, "
                "updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, 1, now(), now() + interval "
                "'30 days', now() + interval '40 days', '[]', now())",
                f"seeded-site-{piloted}-{seq}", uuid.UUID(piloted), pid, seq, clinic_id, status,
            )  # fmt: skip
    return Seeded(programme, ids_by_stage, clinics)


def figures(table: list[list[str]]) -> dict[str, list[str]]:
    """A table's rows by their first cell, the figures as plain digits."""
    return {row[0]: ["".join(c for c in cell if c.isdigit()) for cell in row[1:]] for row in table}


async def table(page: Page, selector: str) -> list[list[str]]:
    rows: list[list[str]] = await page.locator(f"{selector} tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.children).map(c => c.textContent.trim()))"
    )
    return rows


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_the_pictures_carry_their_figures_and_the_list_counts_and_csv_agree(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    seeded = await seed(stack, make_user)
    me = await admin_member(stack, make_user, lang, "Pavel Admin")
    pid = seeded.programme["id"]

    async with person(browser, locale=lang) as page:
        await sign_in(page, site, me, says)
        await page.goto(f"{site.url}/admin?programme_id={pid}")
        charts = page.locator("svg[role=img]")
        await expect(charts).to_have_count(4)
        # Each picture is named, and its figures are in the table beside it.
        funnel = figures(await table(page, "#funnel-figures"))
        assert funnel[says["pilot"]] == ["9"]  # piloting 3 + reporting 2 + closed 4
        assert funnel[says["completed"]] == ["4"]
        budget_rows = await table(page, "#budget-figures")
        assert len(budget_rows) == 4  # the untouched budget, then three days
        last = figures([budget_rows[-1]])
        remaining = str(seeded.programme["budget_rub"] - 1_400_000_000)
        approved, reserved, disbursed = "1400000000", "950000000", "450000000"
        assert next(iter(last.values())) == [approved, reserved, disbursed, remaining]
        pilots = figures(await table(page, "#pilots-figures"))
        assert sum(map(int, pilots["City Clinic No. 12"])) == 3
        assert sum(map(int, pilots["Children's Hospital No. 3"])) == 2
        share = figures(await table(page, "#share-figures"))
        assert [v[0] for v in share.values()] == ["1", "3", "25", "30"]
        for name in ("funnel", "budget", "pilots", "share"):
            label = await page.locator(f"#{name}-t").text_content()
            assert label and label.strip()
        await visit(page, f"{lang}-admin-01-dashboard")

        # The list of the programme: counts by stage, a stage chosen, the CSV of the same.
        await page.get_by_role("link", name=says["its_applications"]).click()
        counts = {
            stage: int("".join(c for c in text if c.isdigit()))
            for stage, text in zip(
                await page.locator("#counts a").evaluate_all("a => a.map(x => x.dataset.stage)"),
                await page.locator("#counts a .n").all_text_contents(),
                strict=True,
            )
        }
        assert {k: counts[k] for k in COPIES} == COPIES
        await page.locator("#f-stage-rejected").check()
        await page.get_by_role("main").get_by_role("button", name=says["show"]).click()
        await page.wait_for_url("**stage=rejected*")
        rows = page.locator("#applications tbody tr")
        await expect(rows).to_have_count(COPIES["rejected"])
        await expect(page.locator("#counts-title")).to_contain_text(str(COPIES["rejected"]))
        listed = set(await ids_listed(page))
        assert listed == set(seeded.ids_by_stage["rejected"])
        await visit(page, f"{lang}-admin-02-list")
        csv_url = await page.get_by_role("link", name="CSV").get_attribute("href")
        answer = await page.request.get(f"{site.url}{csv_url}")
        assert answer.ok and answer.headers["content-type"].startswith("text/csv")
        lines = list(csv.DictReader(io.StringIO(await answer.text())))
        assert {line["id"] for line in lines} == listed
        assert {line["stage"] for line in lines} == {"rejected"}

        # Page by page (keyset: each page after the last one's row), every one exactly once.
        await page.goto(f"{site.url}/admin/applications?programme_id={pid}&limit=5")
        seen: list[str] = []
        while True:
            seen += await ids_listed(page)
            following = page.get_by_role("link", name=says["next_page"])
            if not await following.count():
                break
            await following.click()
        assert len(seen) == len(set(seen)) == sum(counts.values())
        everything = await page.request.get(f"{site.url}/admin/applications.csv?programme_id={pid}")
        assert {line["id"] for line in csv.DictReader(io.StringIO(await everything.text()))} == set(
            seen
        )


async def ids_listed(page: Page) -> list[str]:
    hrefs = await page.locator("#applications tbody a").evaluate_all(
        "a => a.map(x => x.getAttribute('href'))"
    )
    return [(href or "").rsplit("/", 1)[-1] for href in hrefs]


# --- the pictures' own rules -------------------------------------------------------------------


async def test_a_picture_names_itself_and_escapes_what_it_is_given() -> None:
    drawn = charts.bars("c", "Title <i>", "About it", [("<script>x</script>", 3.0)], str)
    assert 'role="img"' in drawn and 'aria-labelledby="c-t c-d"' in drawn
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn
    assert '<title id="c-t">Title &lt;i&gt;</title>' in drawn
    assert " style=" not in drawn  # the content security policy allows no inline style


async def test_the_funnel_counts_each_application_up_to_the_step_it_reached() -> None:
    steps = funnel({"rejected": 2, "closed": 1, "withdrawn": 1, "ineligible": 3})
    reached = {s.step: s.reached for s in steps}
    assert reached == {
        "submitted": 7,  # every one
        "screened": 6,  # all but the withdrawn, whose stage says no more
        "review": 3,  # not the ineligible
        "council": 3,
        "agreement": 1,  # the rejected stopped at the council
        "pilot": 1,
        "reporting": 1,
        "closed": 1,
    }


@pytest.mark.timeout(120)
async def test_a_cancellation_asks_first_and_then_is_in_the_history(
    site: Site, stack: Stack, make_user: UserFactory
) -> None:
    spec = f"dermatology-{uuid.uuid4().hex[:6]}"
    programme = await open_programme(stack, make_user, specialties=[spec])
    application_id = await apply(stack, make_user, programme["id"], spec, "Stuck one")
    me = await admin_member(stack, make_user, "en", "Olga Admin")
    url = f"/admin/applications/{application_id}"
    async with signed_in_client(site, me) as client:
        token = await csrf(client, url)
        reason = "A duplicate of an earlier application."
        asked = await client.post(f"{url}/cancel", data={"csrf_token": token, "reason": reason})
        assert asked.status_code == 200 and "Confirm: Cancel the application" in asked.text
        stage = await stack.pool.fetchval(
            "SELECT stage FROM applications WHERE id = $1", uuid.UUID(application_id)
        )
        assert stage != "cancelled"  # nothing is done before the confirmation
        body = {"csrf_token": token, "reason": reason, "step": "confirmed"}
        done = await client.post(f"{url}/cancel", data=body)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{url}?done=cancel#history"
        shown = (await client.get(done.headers["location"])).text
    assert "Done: the application is cancelled." in shown
    assert "Why: A duplicate of an earlier application." in shown
    assert "Olga Admin" in shown
    # An ended application offers no intervention.
    assert 'id="act-cancel"' not in shown
