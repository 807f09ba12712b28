"""Bearer tokens as their holders and the admins see them: each expires (90 days unless the
admin says otherwise), can be revoked and rotated, records when it was last used (written at
most once a minute), and a refused one says why. A client address presenting refused tokens
again and again is slowed down (429 with Retry-After) before each one costs a lookup.

Expiry and last use are moved in the database (as if the days had passed); the throttle is
tried on an API of the test's own, from addresses of its own, with a clock the test moves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from grantflow.api.app import create_app
from grantflow.api.throttle import RefusalThrottle
from grantflow.db import create_pool
from grantflow.dev.demo import create_demo_users
from grantflow.services import user as user_service
from grantflow.services.context import Caller, Resources
from grantflow.services.errors import Forbidden, Invalid, NotFound
from grantflow.store import users as user_store
from schemas.common import Actor, Role
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    create_programme,
    fresh_database,
)

pytestmark = [SESSION, pytest.mark.system]
DAY = timedelta(days=1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(stack: Stack, token: str) -> httpx.Response:
    return await stack.api.get("/v1/me", headers=bearer(token))


async def token_row(stack: Stack, user_id: str) -> dict[str, Any]:
    row = await stack.pool.fetchrow(
        "SELECT token_expires_at, token_revoked_at, token_last_used_at FROM users WHERE id = $1",
        uuid.UUID(user_id),
    )
    assert row is not None
    return dict(row)


def caller(admin: User) -> Caller:
    return Caller(
        actor=Actor(user_id=admin.id, role=admin.role, name=admin.name), organisation_type=None
    )


def resources(stack: Stack) -> Resources:
    return Resources(stack.settings, stack.pool, stack.client)


# --- expiry ----------------------------------------------------------------------------------


async def test_a_new_token_expires_in_90_days_unless_the_admin_says_otherwise(
    stack: Stack, admin: User
) -> None:
    before = datetime.now(UTC)
    made = await stack.api.post(
        "/v1/users", json={"name": "Default Life", "role": "council"}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    expires = datetime.fromisoformat(made.json()["token_expires_at"])
    assert (
        before + 90 * DAY - timedelta(minutes=1)
        < expires
        < before + 90 * DAY + timedelta(minutes=1)
    )
    short = await stack.api.post(
        "/v1/users",
        json={"name": "Short Life", "role": "council", "token_expires_in_days": 7},
        headers=admin.headers,
    )
    assert short.status_code == 201, short.text
    assert datetime.fromisoformat(short.json()["token_expires_at"]) < before + 8 * DAY
    for days in (0, -1, 3651, "soon"):
        refused = await stack.api.post(
            "/v1/users",
            json={"name": "Bad Life", "role": "council", "token_expires_in_days": days},
            headers=admin.headers,
        )
        assert refused.status_code == 422, (days, refused.text)
    assert (await me(stack, short.json()["token"])).status_code == 200


async def test_an_expired_token_is_refused_saying_since_when(
    stack: Stack, make_user: UserFactory
) -> None:
    holder = await make_user(Role.applicant)
    assert (await me(stack, holder.token)).status_code == 200
    # Ninety days later.
    expired_at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    await stack.pool.execute(
        "UPDATE users SET token_expires_at = $2 WHERE id = $1", uuid.UUID(holder.id), expired_at
    )
    refused = await me(stack, holder.token)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "bearer token expired on 2026-03-01 09:30 UTC"
    assert refused.headers["www-authenticate"] == "Bearer"
    # A write is refused the same way, before anything else is looked at.
    post = await stack.api.post("/v1/applications", json={}, headers=bearer(holder.token))
    assert post.status_code == 401 and "expired" in post.json()["detail"]


# --- revocation and rotation -------------------------------------------------------------------


async def test_a_revoked_token_is_refused_until_rotated_and_the_old_one_never_returns(
    stack: Stack, admin: User, make_user: UserFactory
) -> None:
    holder = await make_user(Role.reviewer, specialty="radiology")
    res, by_admin = resources(stack), caller(admin)
    revoked = await user_service.revoke_token(res, by_admin, uuid.UUID(holder.id))
    assert revoked.revoked_at is not None and revoked.user_id == holder.id
    refused = await me(stack, holder.token)
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("bearer token revoked on ")
    again = await user_service.revoke_token(res, by_admin, uuid.UUID(holder.id))
    assert again.revoked_at == revoked.revoked_at  # the first revocation stands

    rotated = await user_service.rotate_token(res, by_admin, uuid.UUID(holder.id), 30)
    assert rotated.user.id == holder.id and rotated.token != holder.token
    assert rotated.token_expires_at < datetime.now(UTC) + 31 * DAY
    fresh = await me(stack, rotated.token)
    assert fresh.status_code == 200 and fresh.json()["id"] == holder.id
    old = await me(stack, holder.token)
    assert old.status_code == 401 and old.json()["detail"] == "missing or invalid bearer token"
    status = await user_service.token_status(res, by_admin, uuid.UUID(holder.id))
    assert status.revoked_at is None and status.expires_at == rotated.token_expires_at

    # Rotation also replaces a token that still works: the old one stops at once, and the
    # new one does everything the old one did.
    applicant = await make_user(Role.applicant)
    replaced = await user_service.rotate_token(res, by_admin, uuid.UUID(applicant.id))
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"])
    stale = await stack.api.post("/v1/applications", json=body, headers=bearer(applicant.token))
    assert stale.status_code == 401
    submitted = await stack.api.post("/v1/applications", json=body, headers=bearer(replaced.token))
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["applicant_id"] == applicant.id


async def test_only_admins_revoke_or_rotate_and_unknown_users_are_not_found(
    stack: Stack, admin: User, make_user: UserFactory
) -> None:
    holder = await make_user(Role.council)
    res = resources(stack)
    other = caller(await make_user(Role.council))
    with pytest.raises(Forbidden):
        await user_service.revoke_token(res, other, uuid.UUID(holder.id))
    with pytest.raises(Forbidden):
        await user_service.rotate_token(res, other, uuid.UUID(holder.id))
    nobody = uuid.uuid4()
    for action in (user_service.revoke_token, user_service.rotate_token):
        with pytest.raises(NotFound, match="user not found"):
            await action(res, caller(admin), nobody)
    with pytest.raises(Invalid, match="1 to 3650 days"):
        await user_service.rotate_token(res, caller(admin), uuid.UUID(holder.id), 0)
    assert (await me(stack, holder.token)).status_code == 200  # nothing was changed


# --- last use --------------------------------------------------------------------------------


async def test_last_use_is_written_at_most_once_a_minute(
    stack: Stack, make_user: UserFactory
) -> None:
    holder = await make_user(Role.council)
    assert (await token_row(stack, holder.id))["token_last_used_at"] is None
    assert (await me(stack, holder.token)).status_code == 200
    first = (await token_row(stack, holder.id))["token_last_used_at"]
    assert first is not None and abs(first - datetime.now(UTC)) < timedelta(minutes=1)
    for _ in range(5):
        assert (await me(stack, holder.token)).status_code == 200
    assert (await token_row(stack, holder.id))["token_last_used_at"] == first  # no write
    # Two minutes later, the next request writes it again.
    await stack.pool.execute(
        "UPDATE users SET token_last_used_at = now() - interval '2 minutes' WHERE id = $1",
        uuid.UUID(holder.id),
    )
    assert (await me(stack, holder.token)).status_code == 200
    later = (await token_row(stack, holder.id))["token_last_used_at"]
    assert later > first
    # A refused token is not "used".
    await stack.pool.execute(
        "UPDATE users SET token_revoked_at = now(), token_last_used_at = NULL WHERE id = $1",
        uuid.UUID(holder.id),
    )
    assert (await me(stack, holder.token)).status_code == 401
    assert (await token_row(stack, holder.id))["token_last_used_at"] is None


# --- the throttle ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def own_api(stack: Stack) -> AsyncIterator[tuple[Callable[[str], httpx.AsyncClient], Any]]:
    """An API process of the test's own (its own throttle, on a clock the test moves) and a
    client per address."""
    app = create_app(stack.settings, resources(stack))
    clock = Clock()
    app.state.refusals = RefusalThrottle(clock=clock)
    clients: list[httpx.AsyncClient] = []

    def client_at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://grantflow.test"))
        return clients[-1]

    yield client_at, clock
    for c in clients:
        await c.aclose()


async def test_repeated_refused_tokens_from_one_address_are_slowed_down(
    own_api: tuple[Callable[[str], httpx.AsyncClient], Clock],
    make_user: UserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client_at, clock = own_api
    guesser, neighbour = client_at("203.0.113.7"), client_at("198.51.100.20")
    holder = await make_user(Role.council)
    lookups: list[str] = []
    real_lookup = user_store.token_owner

    async def counted(db: Any, token: str) -> Any:
        lookups.append(token)
        return await real_lookup(db, token)

    monkeypatch.setattr(user_store, "token_owner", counted)
    # No token at all costs no lookup, and is not counted.
    for _ in range(30):
        assert (await guesser.get("/v1/me")).status_code == 401
    assert lookups == []
    for n in range(20):
        guess = await guesser.get("/v1/me", headers=bearer(f"gf_guess{n}"))
        assert guess.status_code == 401, n
    assert len(lookups) == 20
    clock.now += 10
    throttled = await guesser.get("/v1/me", headers=bearer("gf_guess20"))
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "50"
    assert throttled.json()["detail"] == (
        "too many refused bearer tokens from your address; retry after 50 s"
    )
    # Even a good token waits: telling it apart would cost the lookup being saved.
    assert (await guesser.get("/v1/me", headers=bearer(holder.token))).status_code == 429
    assert len(lookups) == 20
    # Another address is not slowed down.
    assert (await neighbour.get("/v1/me", headers=bearer(holder.token))).status_code == 200
    assert (await neighbour.get("/v1/me", headers=bearer("gf_wrong"))).status_code == 401
    # Once the minute is over, the address is heard again.
    clock.now += 50
    assert (await guesser.get("/v1/me", headers=bearer(holder.token))).status_code == 200
    assert (await guesser.get("/v1/me", headers=bearer("gf_again"))).status_code == 401


async def test_expired_and_revoked_tokens_count_as_refusals_too(
    own_api: tuple[Callable[[str], httpx.AsyncClient], Clock], make_user: UserFactory, stack: Stack
) -> None:
    client_at, _ = own_api
    poller = client_at("192.0.2.99")
    holder = await make_user(Role.council)
    await stack.pool.execute(
        "UPDATE users SET token_expires_at = now() - interval '1 day' WHERE id = $1",
        uuid.UUID(holder.id),
    )
    statuses = [(await poller.get("/v1/me", headers=bearer(holder.token))).status_code]
    assert statuses == [401]
    await stack.pool.execute(
        "UPDATE users SET token_revoked_at = now() WHERE id = $1", uuid.UUID(holder.id)
    )
    for _ in range(20):
        statuses.append((await poller.get("/v1/me", headers=bearer(holder.token))).status_code)
    assert statuses == [401] * 20 + [429]


async def test_the_throttle_keeps_a_bounded_table_of_addresses() -> None:
    clock = Clock()
    throttle = RefusalThrottle(limit=2, window=60, max_addresses=3, clock=clock)
    for n in range(10):
        throttle.refused(f"10.0.0.{n}")
        throttle.refused(f"10.0.0.{n}")
        clock.now += 1
    assert len(throttle._windows) == 3  # the most recent ones
    assert throttle.retry_after("10.0.0.9") == 60 - 1
    assert throttle.retry_after("10.0.0.0") is None  # forgotten: the oldest went first
    clock.now += 60
    throttle.refused("10.0.0.42")
    assert list(throttle._windows) == ["10.0.0.42"]  # the ended windows are gone


# --- demo users --------------------------------------------------------------------------------


async def test_the_demo_users_tokens_work_and_expire_in_90_days(stack: Stack) -> None:
    url = await fresh_database(stack.server_url, f"demo_{uuid.uuid4().hex[:8]}")
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            demo = await create_demo_users(conn)
        settings = stack.settings.model_copy(update={"database_url": url})
        app = create_app(settings, Resources(settings, pool, stack.client))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as api:
            for made in demo:
                seen = await api.get("/v1/me", headers=bearer(made.token))
                assert seen.status_code == 200 and seen.json()["name"] == made.user.name
                left = made.token_expires_at - datetime.now(UTC)
                assert 89 * DAY < left <= 90 * DAY
    finally:
        await pool.close()
