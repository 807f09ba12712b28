"""Two approvals on one budget at the same moment, on PostgreSQL's default isolation (read
committed, where nothing aborts a colliding writer): the second waits for the first's lock on
the programme and is decided on the budget the first left, so together they never overspend.

Broken on purpose (the reservation reads the budget without `FOR UPDATE`), the second
answers at once, granted, and the ledger ends 20 over its budget; tests/test_serialisation.py
and the council's race of two sessions did not notice (SERIALIZABLE aborts one writer anyway,
and two HTTP requests rarely overlap inside one transaction)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import ledger
from schemas.council import Reservation, Reserved
from tests.conftest import SESSION, fresh_database
from tests.test_ledger import BUDGET, _programme

pytestmark = [SESSION, pytest.mark.unit]
WAITING_SQL = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"


async def waits_for_a_lock(
    observer: asyncpg.Connection, pid: int, task: asyncio.Task[Reserved]
) -> None:
    """Until the backend `pid` waits for a lock; fails if `task` answers first."""
    async with asyncio.timeout(10):
        while not await observer.fetchval(WAITING_SQL, pid):
            assert not task.done(), f"the second reservation did not wait: {task.result()}"
            await asyncio.sleep(0.01)


async def test_a_second_approval_waits_for_the_first_and_the_budget_holds(
    postgres: EmbeddedPostgres,
) -> None:
    url = await fresh_database(postgres.url, f"lock_{uuid.uuid4().hex[:8]}")
    first, second, observer = [await asyncpg.connect(url) for _ in range(3)]
    try:
        programme, apps = await _programme(first)

        def approval(n: int) -> Reservation:
            return Reservation(
                key=f"approval:{n}",
                programme_id=str(programme),
                application_id=str(apps[n]),
                amount_rub=60,
                reason="approved",
                at=datetime.now(UTC),
            )

        async def alone(conn: asyncpg.Connection, r: Reservation) -> Reserved:
            async with conn.transaction():
                return await ledger.reserve(conn, r)

        async with first.transaction():
            assert (await ledger.reserve(first, approval(0))).ok
            racing = asyncio.create_task(alone(second, approval(1)))
            await waits_for_a_lock(observer, second.get_server_pid(), racing)
        answer = await racing
        assert (answer.ok, answer.remaining_rub) == (False, BUDGET - 60)
        balance = await ledger.balance(observer, programme)
        assert balance is not None and balance.balanced, balance
        assert balance.reserved_rub == 60
    finally:
        for conn in (first, second, observer):
            await conn.close()
