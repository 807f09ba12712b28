"""The pages as people use them: the test stack's app served by a real uvicorn on a free port
of 127.0.0.1 (in the session's event loop, beside the worker), Debian's chromium driven by
Playwright's async API, each browser context with a fixed locale and time zone, axe on every
page a test visits, and screenshots under docs/screenshots/.

Links that people get by e-mail are read from the notification outbox, as a person reads
their mailbox."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from grantflow.api.app import create_app
from grantflow.dev.embedded import free_port
from grantflow.services.context import Resources
from grantflow.settings import Settings
from schemas.common import Role
from tests.conftest import Stack, User, UserFactory, create_programme, eventually

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium")
PASSWORD = "correct horse battery"
LINK = re.compile(r"https?://\S+")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's chromium (tests/pages)")


class _Server(uvicorn.Server):
    """uvicorn without signal handlers of its own: the test process keeps Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Site:
    """The pages served for real, and a client that talks to them as a browser would."""

    url: str
    settings: Settings
    stack: Stack

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A browser that asks for English, as the tests read it."""
        headers = {"accept-language": "en", **kwargs.pop("headers", {})}
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def site(stack: Stack) -> AsyncIterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = stack.settings.model_copy(update={"public_url": url})
    app = create_app(settings, Resources(settings, stack.pool, stack.client))
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server), within=30, interval=0.05)
    yield Site(url, settings, stack)
    server.should_exit = True
    await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("no chromium: `apt-get install --no-install-recommends chromium`")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


@contextlib.asynccontextmanager
async def person(
    browser: Browser,
    locale: str,
    timezone_id: str = "Europe/Moscow",
    width: int = 1024,
    javascript: bool = True,
) -> AsyncIterator[Page]:
    """A browser of its own (cookies, language, time zone), as one person has."""
    context: BrowserContext = await browser.new_context(
        locale=locale,
        timezone_id=timezone_id,
        viewport={"width": width, "height": 900},
        java_script_enabled=javascript,
    )
    context.set_default_timeout(20_000)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        page = await context.new_page()
        page.on(
            "console",
            lambda m: errors.append(f"{m.text} at {m.location}") if m.type == "error" else None,
        )
        yield page
        # No CDN, no font or script from elsewhere: every request went to the site itself.
        origins = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
        assert len(origins) <= 1, f"requests off the site's host: {sorted(origins)}"
        # Nor anything the content security policy had to stop, nor a script that failed.
        assert not errors, errors
    finally:
        await context.close()


_axe = Axe()


async def accessible(page: Page) -> None:
    """axe finds no violation on the page as it is now."""
    results = await _axe.run(page)
    assert results.violations_count == 0, results.generate_report()


async def shoot(page: Page, name: str) -> None:
    """A screenshot of the whole page, to look at (docs/screenshots/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def visit(page: Page, name: str | None = None) -> None:
    """What every test does on every page it reaches: axe, and a screenshot if named."""
    await page.wait_for_load_state("load")
    await accessible(page)
    if name:
        await shoot(page, name)


async def last_link(stack: Stack, email: str, path: str) -> str:
    """The newest link to `path` in the outbox for `email`: what the person's mailbox shows."""
    body = await stack.pool.fetchval(
        "SELECT n.body FROM notifications n JOIN users u ON u.id = n.user_id "
        "WHERE lower(u.email) = lower($1) AND n.kind = 'account_link' AND n.body LIKE $2 "
        "ORDER BY n.id DESC LIMIT 1",
        email,
        f"%{path}?token=%",
    )
    assert body, f"no e-mail with a {path} link for {email}"
    found = LINK.search(body)
    assert found, body
    return found.group(0)


def new_email(prefix: str = "applicant") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@clinic.example"


@dataclass
class Member:
    """A user who signs in to the pages: the conftest's user with an e-mail and a password."""

    user: User
    email: str
    password: str = PASSWORD


async def with_password(stack: Stack, user: User) -> Member:
    """Give a test user an e-mail and a confirmed password, as `grantflow dev` does, and
    English for the pages (the tests read English unless they say otherwise)."""
    from grantflow.services.account import set_demo_password
    from grantflow.store.account import set_preferences

    email = new_email(user.role.value)
    await set_demo_password(stack.pool, uuid.UUID(user.id), email, PASSWORD)
    await set_preferences(stack.pool, uuid.UUID(user.id), locale="en")
    return Member(user, email)


@contextlib.asynccontextmanager
async def signed_in_client(site: Site, member: Member) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a session, signed in through the sign-in form."""
    async with site.client() as client:
        token = await csrf(client, "/sign-in")
        data = {"email": member.email, "password": member.password, "csrf_token": token}
        response = await client.post("/sign-in", data=data)
        assert response.status_code == 303, response.text
        yield client


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    """The CSRF token of the form on `path`, as the browser would hold it."""
    response = await client.get(path)
    found = _CSRF.search(response.text)
    assert found, f"no form on {path}: {response.status_code}"
    return found.group(1)


async def open_programme(stack: Stack, make_user: UserFactory, **overrides: Any) -> dict[str, Any]:
    admin = await make_user(Role.admin)
    return await create_programme(stack, admin, **overrides)


def from_address(site: Site, address: str) -> httpx.AsyncClient:
    """A client whose requests come from `address` (sign-in is throttled per address, so tests
    that fail sign-ins on purpose keep off 127.0.0.1), asking for English."""
    app = create_app(site.settings, Resources(site.settings, site.stack.pool, site.stack.client))
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    return httpx.AsyncClient(
        transport=transport, base_url="http://grantflow.test", headers={"accept-language": "en"}
    )
