"""Accounts as people meet them: staff invited from the command line set their password by a
link, an unconfirmed address gets a new link instead of a session, "forgot password" says
the same whether or not the address has an account, sessions end when idle or too old, and
the language chosen on any page is remembered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from grantflow.store import account as store_account
from schemas.common import Role
from tests.conftest import SESSION, UserFactory
from tests.pages.conftest import (
    PASSWORD,
    Site,
    csrf,
    from_address,
    last_link,
    new_email,
    signed_in_client,
    with_password,
)

pytestmark = [SESSION, pytest.mark.system]
GRANTFLOW = Path(sys.executable).parent / "grantflow"


def users_create(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """`grantflow users create` against the test stack's database, as an admin runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": site.stack.database_url,
        "TEMPORAL_ADDRESS": "unused-by-this-command",
        "GRANTFLOW_PUBLIC_URL": site.url,
    }
    return subprocess.run(
        [str(GRANTFLOW), "users", "create", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_staff_invited_from_the_command_line_set_a_password_by_link(site: Site) -> None:
    email = new_email("reviewer")
    made = await asyncio.to_thread(
        users_create,
        site,
        *("--role", "reviewer", "--name", "Dr. Irina Volkova", "--institution", "City Hospital 52"),
        *("--specialty", "cardiology", "--email", email),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    *_, link, token = made.stdout.strip().splitlines()
    assert link.startswith(f"{site.url}/set-password?token=") and token.startswith("gf_")
    assert link == await last_link(site.stack, email, "/set-password")  # the e-mail has it too

    async with site.client() as client:
        assert (await client.get(link)).status_code == 200
        data = {
            "token": link.split("token=")[1],
            "password": PASSWORD,
            "password_again": PASSWORD,
            "csrf_token": await csrf(client, "/sign-in"),
        }
        assert (await client.post("/set-password", data=data)).status_code == 303
        assert (await client.get(link)).status_code == 404  # used up
    async with site.client() as client:
        token = await csrf(client, "/sign-in")
        data = {"email": email, "password": PASSWORD, "csrf_token": token}
        assert (await client.post("/sign-in", data=data)).status_code == 303
        home = await client.get("/", follow_redirects=True)
        assert "Мои задания" in home.text  # a reviewer starts at the inbox, in ru at first

    # An address that is taken creates nobody.
    again = await asyncio.to_thread(
        users_create, site, "--role", "council", "--name", "Twin", "--email", email.upper()
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    twins = await site.stack.pool.fetchval("SELECT count(*) FROM users WHERE name = 'Twin'")
    assert twins == 0


async def test_an_unconfirmed_address_gets_a_new_link_not_a_session(site: Site) -> None:
    email = new_email()
    async with from_address(site, f"10.5.{uuid.uuid4().int % 250}.1") as client:
        form = {
            "name": "Clara",
            "email": email,
            "institution": "MedTech Labs",
            "organisation_type": "company",
            "time_zone": "Asia/Yekaterinburg",
            "password": PASSWORD,
            "csrf_token": await csrf(client, "/register"),
        }
        assert (await client.post("/register", data=form)).status_code == 200
        first = await last_link(site.stack, email, "/confirm-email")
        token = await csrf(client, "/sign-in")
        data = {"email": email, "password": PASSWORD, "csrf_token": token}
        refused = await client.post("/sign-in", data=data)
        assert refused.status_code == 200 and "Confirm your e-mail address first" in refused.text
        second = await last_link(site.stack, email, "/confirm-email")
        assert second != first
        assert (await client.get(first)).status_code == 404  # the newer link replaced it
        assert (await client.get(second)).status_code == 200
        assert (await client.post("/sign-in", data=data)).status_code == 303
        # Deadlines in the zone chosen at registration.
        assert "Yekaterinburg, UTC+05:00" in (await client.get("/calls")).text


async def test_forgot_password_says_the_same_for_an_unknown_address(
    site: Site, make_user: UserFactory
) -> None:
    async with site.client() as client:
        token = await csrf(client, "/forgot-password")
        known = await with_password(site.stack, await make_user(Role.applicant))
        answers = []
        for email in (known.email, new_email("nobody")):
            response = await client.post(
                "/forgot-password", data={"email": email, "csrf_token": token}
            )
            answers.append(response.text.replace(email, "EMAIL"))
    assert answers[0] == answers[1]


async def test_a_session_ends_when_idle_too_long_or_too_old(
    site: Site, make_user: UserFactory
) -> None:
    member = await with_password(site.stack, await make_user(Role.applicant))
    for column, age in (("last_seen_at", "3 hours"), ("expires_at", "1 second")):
        async with signed_in_client(site, member) as client:
            assert (await client.get("/account")).status_code == 200
            # An interval constant per case: no value from outside enters the statement.
            shift = f"now() - interval '{age}'"
            await site.stack.pool.execute(
                f"UPDATE sessions SET {column} = {shift} WHERE user_id = $1",  # noqa: S608
                uuid.UUID(member.user.id),
            )
            ended = await client.get("/account")
            assert ended.status_code == 303 and ended.headers["location"].startswith("/sign-in")


async def test_the_language_chosen_on_any_page_is_remembered(
    site: Site, make_user: UserFactory
) -> None:
    member = await with_password(site.stack, await make_user(Role.applicant))
    async with site.client(headers={"accept-language": "ru-RU,ru;q=0.9"}) as client:
        assert "Войти" in (await client.get("/sign-in")).text  # Accept-Language, before sign-in
        token = await csrf(client, "/sign-in")
        switched = await client.post(
            "/language", data={"locale": "en", "next": "/sign-in", "csrf_token": token}
        )
        assert switched.headers["location"] == "/sign-in"
        assert "Forgot your password?" in (await client.get("/sign-in")).text  # the cookie
    async with signed_in_client(site, member) as client:
        token = await csrf(client, "/account")
        await client.post("/language", data={"locale": "ru", "next": "/", "csrf_token": token})
    found = await store_account.by_email(site.stack.pool, member.email)
    assert found is not None and found.locale == "ru"
    # Another browser that asks for English: the account's language wins once signed in.
    async with signed_in_client(site, member) as client:
        assert "Мои заявки" in (await client.get("/")).text
