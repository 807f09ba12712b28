"""The budget ledger under any sequence of approvals, reductions, withdrawals, lapses and
payments: it never goes over the budget or below zero, and it always balances."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import Conn, ledger
from schemas.council import Reservation
from tests.conftest import fresh_database

pytestmark = pytest.mark.unit

BUDGET = 100
APPS = 4
SEED_SQL = """
INSERT INTO users (id, name, role, token_hash) VALUES ($1, 'admin', 'admin', $2);
"""

Op = tuple[str, int, int]  # (kind, application, amount)
operations = st.lists(
    st.tuples(
        st.sampled_from(["approve", "reduce", "withdraw", "lapse", "pay"]),
        st.integers(min_value=0, max_value=APPS - 1),
        st.integers(min_value=1, max_value=60),
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def database(postgres: EmbeddedPostgres) -> str:
    async def create() -> str:
        return await fresh_database(postgres.url, f"ledger_{uuid.uuid4().hex[:8]}")

    return asyncio.run(create())


async def _programme(conn: Conn) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A fresh programme with APPS applications, for one example."""
    user, programme = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO users (id, name, role, token_hash) VALUES ($1, 'a', 'admin', $2)",
        user,
        user.bytes,
    )
    await conn.execute(
        """INSERT INTO programmes (id, name, budget_rub, max_grant_rub, organisation_types,
               specialties, intake_opens, intake_closes, complex_share_limit,
               complex_annual_cap_rub, params, created_by)
           VALUES ($1, 'p', $2, $2, '{company}', '{x}', now(), now(), 0.15, 1, '{}', $3)""",
        programme,
        BUDGET,
        user,
    )
    apps = [uuid.uuid4() for _ in range(APPS)]
    for app in apps:
        await conn.execute(
            """INSERT INTO applications (id, programme_id, applicant_id, workflow_id, specialty,
                   requested_rub, content, stage, stage_seq, request_digest, submitted_at,
                   updated_at)
               VALUES ($1, $2, $3, $4, 'x', 1, '{}', 'approved', 1, 'd', now(), now())""",
            app,
            programme,
            user,
            f"application-{app}",
        )
    return programme, apps


async def _apply(conn: asyncpg.Connection, kind: str, r: Reservation) -> Any:
    async with conn.transaction():
        if kind == "approve":
            return await ledger.reserve(conn, r)
        if kind == "pay":
            return await ledger.disburse(conn, r)
        return await ledger.release(conn, r)


async def _play(url: str, ops: list[Op]) -> None:
    conn = await asyncpg.connect(url)
    try:
        programme, apps = await _programme(conn)
        # The model: what each application has committed (reserved minus released) and paid.
        committed, paid = [0] * APPS, [0] * APPS
        requests = []
        for n, (kind, i, amount) in enumerate(ops):
            unspent = committed[i] - paid[i]
            if kind in ("withdraw", "lapse"):
                amount = max(unspent, 1)  # a withdrawal or lapse gives back all that is left
            r = Reservation(
                key=f"{programme}:{n}",
                programme_id=str(programme),
                application_id=str(apps[i]),
                amount_rub=amount,
                reason=kind,
                at=datetime.now(UTC),
            )
            result = await _apply(conn, kind, r)
            if kind == "approve":
                fits = sum(committed) + amount <= BUDGET
                assert result.ok == fits
                committed[i] += amount if fits else 0
                assert result.remaining_rub == BUDGET - sum(committed)
            elif kind == "pay":
                assert result == (amount <= unspent)
                paid[i] += amount if result else 0
            else:
                assert result == min(amount, unspent)
                committed[i] -= result
            # A refused approval writes nothing: asked again, it is a new request.
            if kind != "approve" or result.ok:
                requests.append((kind, r))
            balance = await ledger.balance(conn, programme)
            assert balance is not None
            assert balance.balanced, balance.problems
            assert all(e.amount_rub > 0 for e in balance.entries if e.kind == "reserve")
            assert balance.reserved_rub == sum(committed) <= BUDGET
            assert balance.disbursed_rub == sum(paid)
            assert balance.remaining_rub == BUDGET - sum(committed) >= 0
        # Every recorded operation again, as a retried activity would: nothing changes.
        before = await ledger.balance(conn, programme)
        for kind, r in requests:
            await _apply(conn, kind, r)
        assert await ledger.balance(conn, programme) == before
    finally:
        await conn.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
@pytest.mark.slow
def test_the_ledger_never_overspends_never_goes_negative_and_always_balances(
    database: str, ops: list[Op]
) -> None:
    asyncio.run(_play(database, ops))


def test_a_balance_check_finds_an_overspent_ledger(database: str) -> None:
    async def play() -> Any:
        conn = await asyncpg.connect(database)
        try:
            programme, apps = await _programme(conn)
            # Written around the ledger's own rules, as a buggy writer would.
            for n in range(2):
                await conn.execute(
                    "INSERT INTO ledger_entries (key, programme_id, application_id, kind,"
                    " amount_rub, reason, at) VALUES ($1, $2, $3, 'reserve', 60, 'x', now())",
                    f"{programme}:bad{n}",
                    programme,
                    apps[n],
                )
            return await ledger.balance(conn, programme)
        finally:
            await conn.close()

    balance = asyncio.run(play())
    assert not balance.balanced
    assert balance.problems == [f"entry {balance.entries[1].id}: 120 reserved, over the budget 100"]
