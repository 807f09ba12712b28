"""The pages' defences, each as an attacker or an unlucky user meets it: forms without their
CSRF token, the session cookie's flags, a new session id at every sign-in, sign-in throttled
per account and per address (429, Retry-After, audited), links that work once and expire,
other people's applications, a title that tries to run a script, and "sign out everywhere"."""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie

import httpx
import pytest
from playwright.async_api import Browser

from grantflow.api.app import create_app
from grantflow.services import account
from grantflow.services.context import Resources
from grantflow.store import account as store_account
from schemas.common import Role
from tests.conftest import SESSION, UserFactory, application_body
from tests.pages.conftest import (
    PASSWORD,
    Member,
    Site,
    csrf,
    from_address,
    last_link,
    new_email,
    open_programme,
    person,
    signed_in_client,
    visit,
    with_password,
)

pytestmark = [SESSION, pytest.mark.system]


def session_cookie(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("gf_session="):
            jar.load(header)
    return jar


async def applicant(site: Site, make_user: UserFactory) -> Member:
    return await with_password(site.stack, await make_user(Role.applicant))


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    site: Site, make_user: UserFactory
) -> None:
    member = await applicant(site, make_user)
    programme = await open_programme(site.stack, make_user)
    async with signed_in_client(site, member) as client:
        drafts = "SELECT count(*) FROM drafts WHERE applicant_id = $1"
        before = await site.stack.pool.fetchval(drafts, uuid.UUID(member.user.id))
        for token in (None, "0" * 64):
            data = {"programme_id": programme["id"]} | ({"csrf_token": token} if token else {})
            refused = await client.post("/drafts", data=data)
            assert refused.status_code == 403, refused.text
            assert "reload the page" in refused.text
        assert await site.stack.pool.fetchval(drafts, uuid.UUID(member.user.id)) == before
        # The same form with its token goes through.
        token = await csrf(client, f"/calls/{programme['id']}")
        made = await client.post(
            "/drafts", data={"programme_id": programme["id"], "csrf_token": token}
        )
        assert made.status_code == 303
    # Before sign-in too: a sign-in form posted from elsewhere (no cookie, no token) is refused.
    async with site.client() as stranger:
        data = {"email": member.email, "password": member.password}
        assert (await stranger.post("/sign-in", data=data)).status_code == 403


async def test_the_session_cookie_is_http_only_same_site_lax_and_secure_outside_development(
    site: Site, make_user: UserFactory
) -> None:
    member = await applicant(site, make_user)
    async with site.client() as client:
        token = await csrf(client, "/sign-in")
        data = {"email": member.email, "password": member.password, "csrf_token": token}
        signed = await client.post("/sign-in", data=data)
    cookie = session_cookie(signed)["gf_session"]
    assert cookie["httponly"] and cookie["samesite"] == "lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # development serves plain http on 127.0.0.1

    production = site.settings.model_copy(update={"env": "production", "secret_key": "s" * 40})
    app = create_app(production, Resources(production, site.stack.pool, site.stack.client))
    transport = httpx.ASGITransport(app=app, client=(f"10.1.{uuid.uuid4().int % 250}.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="https://grantflow.test") as client:
        token = await csrf(client, "/sign-in")
        data = {"email": member.email, "password": member.password, "csrf_token": token}
        signed = await client.post("/sign-in", data=data)
    assert signed.status_code == 303, signed.text
    assert session_cookie(signed)["gf_session"]["secure"]


async def test_signing_in_gives_a_new_session_id_never_one_the_browser_brought(
    site: Site, make_user: UserFactory
) -> None:
    member = await applicant(site, make_user)
    planted = "attacker-chosen-session-id"
    async with site.client(cookies={"gf_session": planted}) as client:
        token = await csrf(client, "/sign-in")
        data = {"email": member.email, "password": member.password, "csrf_token": token}
        first = session_cookie(await client.post("/sign-in", data=data))["gf_session"].value
        assert first and first != planted
        client.cookies.set("gf_session", first)
        token = await csrf(client, "/account")
        await client.post("/sign-out", data={"csrf_token": token})
        token = await csrf(client, "/sign-in")
        data["csrf_token"] = token
        second = session_cookie(await client.post("/sign-in", data=data))["gf_session"].value
    assert second not in (first, planted)
    # The planted id signs nobody in.
    async with site.client(cookies={"gf_session": planted}) as client:
        assert (await client.get("/account")).headers["location"].startswith("/sign-in")


async def sign_in_as(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    token = await csrf(client, "/sign-in")
    data = {"email": email, "password": password, "csrf_token": token}
    return await client.post("/sign-in", data=data)


async def test_sign_in_is_throttled_per_account_with_retry_after_and_audited(
    site: Site, make_user: UserFactory
) -> None:
    member = await applicant(site, make_user)
    async with from_address(site, "10.2.0.1") as client:
        for _ in range(account.PER_ACCOUNT):
            wrong = await sign_in_as(client, member.email, "not the password")
            assert wrong.status_code == 200 and "Wrong e-mail or password" in wrong.text
        throttled = await sign_in_as(client, member.email.upper(), member.password)
    # Even the right password waits: the account is throttled, whatever the address's case.
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    assert "gf_session" not in throttled.headers.get("set-cookie", "")
    events = await store_account.events(site.stack.pool, email=member.email)
    kinds = [e["kind"] for e in events]
    assert kinds.count("sign_in_failed") == account.PER_ACCOUNT
    assert kinds[-1] == "sign_in_throttled"


async def test_sign_in_is_throttled_per_client_address_across_accounts(
    site: Site, make_user: UserFactory
) -> None:
    member = await applicant(site, make_user)
    address = f"10.3.{uuid.uuid4().int % 250}.9"
    async with from_address(site, address) as client:
        for i in range(account.PER_ADDRESS):
            wrong = await sign_in_as(client, f"guess-{i}@clinic.example", "password123")
            assert wrong.status_code == 200
        throttled = await sign_in_as(client, member.email, member.password)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    # From another address the same account signs in.
    async with from_address(site, "10.4.0.1") as other:
        assert (await sign_in_as(other, member.email, member.password)).status_code == 303


async def test_a_link_works_once_and_not_after_it_expires(site: Site) -> None:
    email = new_email()
    async with site.client() as client:
        token = await csrf(client, "/register")
        form = {
            "name": "Boris",
            "email": email,
            "institution": "Clinic Seven",
            "organisation_type": "medical_institution",
            "time_zone": "Europe/Moscow",
            "password": PASSWORD,
            "csrf_token": token,
        }
        assert (await client.post("/register", data=form)).status_code == 200
        confirm = await last_link(site.stack, email, "/confirm-email")
        assert (await client.get(confirm)).status_code == 200
        reused = await client.get(confirm)
        assert reused.status_code == 404 and "already used" in reused.text

        token = await csrf(client, "/forgot-password")
        await client.post("/forgot-password", data={"email": email, "csrf_token": token})
        reset = await last_link(site.stack, email, "/reset-password")
        assert (await client.get(reset)).status_code == 200
        await site.stack.pool.execute(
            "UPDATE account_links SET expires_at = now() - interval '1 second' "
            "WHERE purpose = 'reset_password' AND used_at IS NULL"
        )
        expired = await client.get(reset)
        assert expired.status_code == 404
        secret = reset.split("token=")[1]
        data = {"token": secret, "password": "a new password!", "password_again": "a new password!"}
        data["csrf_token"] = await csrf(client, "/forgot-password")
        assert (await client.post("/reset-password", data=data)).status_code == 404
    async with site.client() as client:
        assert (await sign_in_as(client, email, "a new password!")).status_code == 200  # refused
        assert (await sign_in_as(client, email, PASSWORD)).status_code == 303


async def test_another_applicants_application_and_draft_are_not_found(
    site: Site, make_user: UserFactory
) -> None:
    owner, other = await applicant(site, make_user), await applicant(site, make_user)
    programme = await open_programme(site.stack, make_user)
    created = await site.stack.api.post(
        "/v1/applications", json=application_body(programme["id"]), headers=owner.user.headers
    )
    app_id = created.json()["id"]
    async with signed_in_client(site, owner) as client:
        token = await csrf(client, f"/calls/{programme['id']}")
        draft = await client.post(
            "/drafts", data={"programme_id": programme["id"], "csrf_token": token}
        )
        draft_url = draft.headers["location"]
        assert (await client.get(f"/applications/{app_id}")).status_code == 200
    async with signed_in_client(site, other) as client:
        for url in (f"/applications/{app_id}", f"/applications/{app_id}/withdraw", draft_url):
            seen = await client.get(url)
            assert seen.status_code == 404, url
            assert "AI triage" not in seen.text


async def test_a_title_with_a_script_is_shown_as_text(
    site: Site, make_user: UserFactory, browser: Browser
) -> None:
    owner = await applicant(site, make_user)
    programme = await open_programme(site.stack, make_user)
    title = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    created = await site.stack.api.post(
        "/v1/applications",
        json=application_body(programme["id"], title=title),
        headers=owner.user.headers,
    )
    app_id = created.json()["id"]
    async with person(browser, locale="en") as page:
        await page.goto(f"{site.url}/sign-in")
        await page.locator("#f-email").fill(owner.email)
        await page.locator("#f-password").fill(owner.password)
        await page.get_by_role("main").get_by_role("button", name="Sign in").click()
        await page.goto(f"{site.url}/applications/{app_id}")
        await visit(page)
        assert await page.locator("h1").text_content() == title
        assert await page.evaluate("window.pwned === undefined")


async def test_sign_out_everywhere_ends_every_session(site: Site, make_user: UserFactory) -> None:
    member = await applicant(site, make_user)
    async with signed_in_client(site, member) as laptop, signed_in_client(site, member) as phone:
        assert (await phone.get("/account")).status_code == 200
        token = await csrf(laptop, "/account")
        ended = await laptop.post("/sign-out-everywhere", data={"csrf_token": token})
        assert ended.status_code == 303
        for client in (laptop, phone):
            after = await client.get("/account")
            assert after.status_code == 303 and after.headers["location"].startswith("/sign-in")
    assert await store_account.live_sessions(site.stack.pool, uuid.UUID(member.user.id)) == 0


@pytest.mark.parametrize(
    "target", ["//evil.example", "/\t/evil.example", "/\\evil.example", "https://evil.example"]
)
async def test_after_sign_in_a_person_goes_only_to_a_page_of_this_site(
    site: Site, make_user: UserFactory, target: str
) -> None:
    member = await applicant(site, make_user)
    async with site.client() as client:
        token = await csrf(client, "/sign-in")
        data = {"email": member.email, "password": member.password, "csrf_token": token}
        signed = await client.post("/sign-in", data={**data, "next": target})
    assert signed.status_code == 303 and signed.headers["location"] == "/"


async def test_pages_load_nothing_from_elsewhere_and_no_site_frames_them(site: Site) -> None:
    async with site.client() as client:
        page = await client.get("/sign-in")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert '<script src="/static/htmx.min.js"' in page.text  # vendored, not from a CDN
