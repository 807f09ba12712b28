# ruff: noqa: RUF001 - Russian is what these tests read: its letters are meant
"""A reviewer's work in the browser, in Russian and in English: the inbox by deadline, one task
declined for a conflict of interest, another accepted after the declaration, the review written
and kept as a draft across a sign-out, checked (the error beside its field) and submitted; the
other reviews appear only then. axe checks every page; screenshots go to docs/screenshots/."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser, Page, expect

from grantflow.store.account import set_preferences
from schemas.common import Role
from tests.conftest import SESSION, Stack, User, UserFactory, application_body, eventually
from tests.pages.conftest import (
    Member,
    Site,
    csrf,
    open_programme,
    person,
    signed_in_client,
    visit,
    with_password,
)
from tests.test_agreement import agreement
from tests.test_council import Council
from tests.test_pilot import Project

pytestmark = [SESSION, pytest.mark.slow]  # a real browser: Chromium through Playwright

SAYS: dict[str, dict[str, str]] = {
    "ru": {
        "sign_in": "Войти",
        "sign_out": "Выйти",
        "my_tasks": "Мои задания",
        "caught_up": "Всё сделано",
        "offered": "Предложено вам",
        "decline": "Отказаться от задания",
        "declined": "Вы отказались от задания.",
        "accept": "Принять задание",
        "tick": "Отметьте это",
        "respond_by": "Ответить до",
        "zone": "(Москва, UTC+03:00)",
        "saved": "Черновик сохранён",
        "check": "Проверить перед отправкой",
        "range": "Целое число от 1 до 10.",
        "confirm": "Проверьте и отправьте рецензию",
        "submit": "Отправить рецензию",
        "submitted": "Ваша рецензия отправлена.",
        "others": "Другие рецензии",
        "past": "Мои прошлые рецензии",
        "ended": "Недавно завершённые",
    },
    "en": {
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "my_tasks": "My tasks",
        "caught_up": "all caught up",
        "offered": "Offered to you",
        "decline": "Decline the task",
        "declined": "You declined the task.",
        "accept": "Accept the task",
        "tick": "Tick this",
        "respond_by": "Respond by",
        "zone": "(Moscow, UTC+03:00)",
        "saved": "Draft saved",
        "check": "Check before submitting",
        "range": "A whole number from 1 to 10.",
        "confirm": "Check and submit your review",
        "submit": "Submit the review",
        "submitted": "Your review is submitted.",
        "others": "The other reviews",
        "past": "My past reviews",
        "ended": "Ended lately",
    },
}


async def sign_in(page: Page, site: Site, member: Member, says: dict[str, str]) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.get_by_role("main").get_by_role("button", name=says["sign_in"]).click()
    await page.wait_for_url(f"{site.url}/reviews")


async def task_of(stack: Stack, reviewer: User, application_id: str) -> str:
    """The review task the workflow offered `reviewer` (it offers moments after screening)."""

    async def offered() -> str | None:
        found = await stack.pool.fetchval(
            "SELECT id FROM review_tasks WHERE reviewer_id = $1 AND application_id = $2",
            uuid.UUID(reviewer.id),
            uuid.UUID(application_id),
        )
        return str(found) if found else None

    await eventually(offered, within=30, interval=0.2)
    found = await offered()
    assert found
    return found


async def apply(
    stack: Stack, make_user: UserFactory, programme_id: str, spec: str, title: str
) -> str:
    applicant = await make_user(Role.applicant)
    body = application_body(programme_id, specialty=spec, title=title)
    created = await stack.api.post("/v1/applications", json=body, headers=applicant.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def review_by_api(stack: Stack, reviewer: User, task_id: str) -> None:
    """Another reviewer of the same application sends its review the API's way."""
    accepted = await stack.api.post(f"/v1/reviews/{task_id}/acceptance", headers=reviewer.headers)
    assert accepted.status_code == 200, accepted.text
    body = {
        "scores": {"clinical_value": 5, "novelty": 4, "feasibility": 6},
        "recommendation": "do_not_fund",
        "comments": "The other expert doubts the dataset.",
    }
    sent = await stack.api.post(
        f"/v1/reviews/{task_id}/review", json=body, headers=reviewer.headers
    )
    assert sent.status_code == 200, sent.text


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lang", ["ru", "en"])
async def test_a_reviewer_declines_accepts_drafts_and_submits_in_the_browser(
    lang: str, site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    says = SAYS[lang]
    spec = f"neurology-{uuid.uuid4().hex[:6]}"  # these two reviewers are its only experts
    programme = await open_programme(stack, make_user, specialties=[spec])
    me = await with_password(stack, await make_user(Role.reviewer, specialty=spec, name="Vera"))
    await set_preferences(stack.pool, uuid.UUID(me.user.id), locale=lang)
    other = await make_user(Role.reviewer, specialty=spec)

    async with person(browser, locale=lang) as page:
        await sign_in(page, site, me, says)
        await expect(page.get_by_text(says["caught_up"])).to_be_visible()
        await visit(page, f"{lang}-reviewer-01-inbox-empty")

        conflicted = await apply(stack, make_user, programme["id"], spec, "Stroke rehab at home")
        chosen = await apply(stack, make_user, programme["id"], spec, "AI triage of X-rays")
        first = await task_of(stack, me.user, conflicted)
        second = await task_of(stack, me.user, chosen)

        await page.reload()
        await expect(page.get_by_text(says["offered"])).to_have_count(2)
        await visit(page, f"{lang}-reviewer-02-inbox")

        # Declined for a conflict of interest: the reason and the flag go with it.
        await page.get_by_role("link", name="Stroke rehab at home").click()
        await expect(page.get_by_text(says["respond_by"])).to_be_visible()
        await expect(page.get_by_text(says["zone"]).first).to_be_visible()
        await visit(page, f"{lang}-reviewer-03-task")
        await page.locator("#f-reason").fill("I advised this team last year.")
        await page.locator("#f-conflict").check()
        await page.get_by_role("button", name=says["decline"]).click()
        await page.wait_for_url("**/reviews?done=declined")
        await expect(page.get_by_text(says["declined"])).to_be_visible()
        # The declined task stays in sight, said as ended, rather than vanishing.
        await expect(page.get_by_role("heading", name=says["ended"])).to_be_visible()
        await visit(page)
        row = await stack.pool.fetchrow(
            "SELECT status, conflict_declared FROM review_tasks WHERE id = $1", uuid.UUID(first)
        )
        assert row is not None
        assert (row["status"], row["conflict_declared"]) == ("declined", True)

        # Accepting asks for the declaration first, beside its box.
        await page.get_by_role("link", name="AI triage of X-rays").click()
        await page.get_by_role("button", name=says["accept"]).click()
        await expect(page.locator("#f-no_conflict-error")).to_contain_text(says["tick"])
        await expect(page.locator("#f-no_conflict")).to_be_focused()
        await visit(page)
        await page.locator("#f-no_conflict").check()
        await page.get_by_role("button", name=says["accept"]).click()
        await page.wait_for_url(f"**/reviews/{second}/review?done=accepted")

        # The draft is kept as typed, across a sign-out.
        await page.locator("#f-score_clinical_value").fill("8")
        await page.locator("#f-note_clinical_value").fill("Real need in district hospitals.")
        await page.locator("#f-score_novelty").fill("42")
        await expect(page.locator("#draft-status")).to_contain_text(says["saved"])
        await page.get_by_role("button", name=says["sign_out"]).click()
        await sign_in(page, site, me, says)
        await page.goto(f"{site.url}/reviews/{second}/review")
        await expect(page.locator("#f-score_clinical_value")).to_have_value("8")
        await expect(page.locator("#f-note_clinical_value")).to_have_value(
            "Real need in district hospitals."
        )
        await page.locator("#f-score_feasibility").fill("7")
        await page.locator("#f-recommendation").select_option("fund_with_changes")
        await page.locator("#f-comments").fill("Strong clinical case; the budget looks thin.")
        await expect(page.locator("#draft-status")).to_contain_text(says["saved"])
        await visit(page, f"{lang}-reviewer-04-rubric")

        # Blind until mine is in: another review exists, and is not shown.
        await review_by_api(stack, other, await task_of(stack, other, chosen))
        await page.get_by_role("button", name=says["check"]).click()
        await expect(page.locator("#f-score_novelty-error")).to_contain_text(says["range"])
        await expect(page.locator("#f-score_novelty")).to_be_focused()
        await visit(page, f"{lang}-reviewer-05-rubric-errors")
        await page.locator("#f-score_novelty").fill("6")
        await page.get_by_role("button", name=says["check"]).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(says["confirm"])
        await visit(page, f"{lang}-reviewer-06-confirm")
        await page.goto(f"{site.url}/reviews/{second}")
        await expect(page.get_by_text(says["others"])).to_have_count(0)
        await expect(page.get_by_text("The other expert doubts the dataset.")).to_have_count(0)
        await page.goto(f"{site.url}/reviews/{second}/confirm")
        await page.get_by_role("button", name=says["submit"]).click()
        await page.wait_for_url(f"**/reviews/{second}?done=submitted")
        await expect(page.get_by_text(says["submitted"])).to_be_visible()
        await expect(page.get_by_role("heading", name=says["others"])).to_be_visible()
        await expect(page.get_by_text("The other expert doubts the dataset.")).to_be_visible()
        await visit(page, f"{lang}-reviewer-07-submitted")
        score = await stack.pool.fetchval(
            "SELECT scores->>'novelty' FROM reviews WHERE task_id = $1", uuid.UUID(second)
        )
        assert score == "6"

        await page.get_by_role("link", name=says["past"]).first.click()
        await expect(page.get_by_role("link", name="AI triage of X-rays")).to_be_visible()
        await visit(page, f"{lang}-reviewer-08-past")


@pytest.mark.timeout(120)
async def test_the_inbox_says_overdue_and_keeps_a_task_taken_away_in_sight(
    site: Site, stack: Stack, make_user: UserFactory
) -> None:
    spec = f"oncology-{uuid.uuid4().hex[:6]}"
    programme = await open_programme(stack, make_user, specialties=[spec])
    me = await with_password(stack, await make_user(Role.reviewer, specialty=spec))
    late = await apply(stack, make_user, programme["id"], spec, "Late one")
    taken = await apply(stack, make_user, programme["id"], spec, "Taken one")
    late_task = await task_of(stack, me.user, late)
    taken_task = await task_of(stack, me.user, taken)
    # The record says the deadline passed (the workflow's own timer is days away).
    await stack.pool.execute(
        "UPDATE review_tasks SET deadline = now() - interval '1 day' WHERE id = $1",
        uuid.UUID(late_task),
    )
    await make_user(Role.reviewer, specialty=spec)  # someone to take the other task over
    admin = await make_user(Role.admin)
    moved = await stack.api.post(
        f"/v1/admin/reviews/{taken_task}/reassignment",
        json={"reason": "The reviewer is on leave."},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text

    async with signed_in_client(site, me) as client:
        inbox = (await client.get("/reviews")).text
    assert "1 application waits for you" in inbox
    assert 'class="deadline overdue"' in inbox and "Overdue" in inbox
    assert "Ended lately" in inbox and "Taken away from you" in inbox
    assert "The reviewer is on leave." in inbox

    # The workflow's refusal reaches the page in the reader's language.
    await set_preferences(stack.pool, uuid.UUID(me.user.id), locale="ru")
    async with signed_in_client(site, me) as client:
        token = await csrf(client, f"/reviews/{taken_task}")
        refused = await client.post(
            f"/reviews/{taken_task}/accept", data={"no_conflict": "on", "csrf_token": token}
        )
    assert refused.status_code == 200
    assert "Это задание уже закрыто." in refused.text
    assert "this review task is" not in refused.text


# --- report reviews and pilot evaluations ------------------------------------------------------

REPORT_SAYS = {
    "ru": {
        "reports": "Отчёты на оценку",
        "pilots": "Пилотные испытания на оценку",
        "decision_error": "Выберите один из вариантов.",
        "fill": "Заполните это поле.",
        "returned": "Отчёт возвращён заявителю с вашим комментарием.",
        "return": "Вернуть на доработку",
        "implement": "Внедрить в клиниках",
        "send_decision": "Отправить решение",
        "send_evaluation": "Отправить оценку",
        "evaluated": "Ваша оценка отправлена.",
        "language": "English",
    },
    "en": {
        "reports": "Reports to assess",
        "pilots": "Pilots to evaluate",
        "decision_error": "Choose one of the options.",
        "fill": "Fill this in.",
        "returned": "The report is returned to the applicant with your comment.",
        "return": "Return it for changes",
        "implement": "Implement it in the clinics",
        "send_decision": "Send the decision",
        "send_evaluation": "Send the evaluation",
        "evaluated": "Your evaluation is sent.",
        "language": "Русский",
    },
}


async def sign_in_any(page: Page, site: Site, member: Member) -> None:
    await page.goto(f"{site.url}/sign-in")
    await page.locator("#f-email").fill(member.email)
    await page.locator("#f-password").fill(member.password)
    await page.locator("main form button[type=submit]").click()
    await page.wait_for_url(f"{site.url}/reviews")


async def switch_language(page: Page, to: str) -> None:
    """The language button in the page's header (remembered for the signed-in user)."""
    await page.get_by_role("button", name=to).click()
    await page.wait_for_load_state("load")


@pytest.mark.timeout(300)
async def test_an_expert_returns_a_report_and_evaluates_a_pilot_in_both_languages(
    site: Site, stack: Stack, make_user: UserFactory, browser: Browser
) -> None:
    """The report is read in Russian (its errors beside their fields) and returned in English;
    the pilot is read in English and evaluated in Russian."""
    admin = await make_user(Role.admin)
    applicant = await make_user(Role.applicant)
    council = Council(stack, admin, make_user)
    project = await Project.accepted(
        council, applicant, tranche_interval=3600, report_interval=1800
    )
    assigned = await stack.api.post(
        f"/v1/admin/applications/{project.app['id']}/reports/reviewer",
        json={"reason": "The admins are short of time."},
        headers=admin.headers,
    )
    assert assigned.status_code == 200, assigned.text
    chosen = assigned.json()["report_reviewer"]["user_id"]
    expert = next(r for r in council.reviewers if r.id == chosen)
    member = await with_password(stack, expert)
    await set_preferences(stack.pool, uuid.UUID(expert.id), locale="ru")
    assert (await project.report(1, "Quarter one: 40 000 studies labelled.")).status_code == 200

    async with person(browser, locale="ru") as page:
        ru, en = REPORT_SAYS["ru"], REPORT_SAYS["en"]
        await sign_in_any(page, site, member)
        await expect(page.get_by_role("heading", name=ru["reports"])).to_be_visible()
        await page.locator(f'a[href="/report-reviews/{project.app["id"]}/1"]').click()
        await expect(page.get_by_text("Quarter one: 40 000 studies labelled.")).to_be_visible()
        await visit(page, "ru-reviewer-09-report")
        await page.get_by_role("button", name=ru["send_decision"]).click()
        await expect(page.locator("#f-decision-error")).to_contain_text(ru["decision_error"])
        await expect(page.locator("#f-comment-error")).to_contain_text(ru["fill"])
        await expect(page.locator("#f-decision-accept")).to_be_focused()
        await visit(page, "ru-reviewer-10-report-errors")
        await page.locator("#f-comment").fill("Please add the numbers per clinic.")
        await switch_language(page, ru["language"])
        # The language button reloads the page: the form again, in English, as it was.
        await page.get_by_label(en["return"]).check()
        await page.locator("#f-comment").fill("Please add the numbers per clinic.")
        await visit(page, "en-reviewer-09-report")
        await page.get_by_role("button", name=en["send_decision"]).click()
        await page.wait_for_url("**/reviews?done=report_returned")
        await expect(page.get_by_text(en["returned"])).to_be_visible()
        await visit(page)
    state = await agreement(council, applicant, project.app)
    assert state["reports"][0]["status"] == "returned"
    assert state["reports"][0]["comment"] == "Please add the numbers per clinic."

    # The pilot: one clinic, its report in, then the evaluator's page.
    clinic = await project.coordinator()
    assert (await project.plan(clinic)).status_code == 200
    assert (await project.site(clinic, "acceptance", status="proposed")).status_code == 200
    assert (await project.report_site(clinic)).status_code == 200
    await project.status("evaluating")
    evaluator = await project.evaluator()
    judge = member if evaluator.id == expert.id else await with_password(stack, evaluator)
    await set_preferences(stack.pool, uuid.UUID(evaluator.id), locale="en")
    async with person(browser, locale="en") as page:
        ru, en = REPORT_SAYS["ru"], REPORT_SAYS["en"]
        await sign_in_any(page, site, judge)
        await expect(page.get_by_role("heading", name=en["pilots"])).to_be_visible()
        await page.locator(f'a[href="/evaluations/{project.app["id"]}"]').click()
        await expect(page.get_by_role("cell", name="patients").first).to_be_visible()
        await visit(page, "en-reviewer-10-evaluation")
        await page.get_by_role("button", name=en["send_evaluation"]).click()
        await expect(page.locator("#f-recommendation-error")).to_contain_text(en["decision_error"])
        await expect(page.locator("#f-comments-error")).to_contain_text(en["fill"])
        await visit(page)
        await switch_language(page, en["language"])
        await page.get_by_label(ru["implement"]).check()
        await page.locator("#f-comments").fill("Оба показателя достигнуты.")
        await visit(page, "ru-reviewer-11-evaluation")
        await page.get_by_role("button", name=ru["send_evaluation"]).click()
        await page.wait_for_url("**/reviews?done=evaluated")
        await expect(page.get_by_text(ru["evaluated"])).to_be_visible()
        await visit(page)
    pilot = await project.pilot()
    assert pilot["status"] == "deciding"
    assert pilot["evaluation"]["recommendation"] == "implement"
