"""Concurrent votes and approvals on one programme's budget, on a database whose default
isolation is SERIALIZABLE (as an operator may set it): PostgreSQL aborts colliding writers
(40001, 40P01), the activities run them again, nobody sees an error, and the ledger and the
votes end as a serial order of the same writes would. Every abort here is PostgreSQL's own,
counted by the transaction helper (`grantflow.store.ABORTED`): a test that saw none would not
have tested the retry."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.council import CouncilActivities
from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import ABORTED, Conn, in_transaction
from schemas.common import Actor, Role
from schemas.council import Choice, Reservation, VoteRecord, VoteRequest
from tests.conftest import SESSION, fresh_database
from tests.test_ledger import BUDGET, _programme

pytestmark = [SESSION, pytest.mark.system]
SEED = 20260801
WRITERS = 24


@pytest_asyncio.fixture(loop_scope="session")
async def serializable(postgres: EmbeddedPostgres) -> AsyncIterator[asyncpg.Pool]:
    url = await fresh_database(postgres.url, f"serial_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(url)
    try:
        name = url.rsplit("/", 1)[1]
        await conn.execute(
            f'ALTER DATABASE "{name}" SET default_transaction_isolation = serializable'
        )
    finally:
        await conn.close()
    pool = await create_pool(url, min_size=WRITERS, max_size=WRITERS)
    assert await pool.fetchval("SHOW default_transaction_isolation") == "serializable"
    yield pool
    await pool.close()


async def programme_of(pool: asyncpg.Pool) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A programme of BUDGET with its applications, as tests/test_ledger.py makes them."""
    async with pool.acquire() as conn:
        return await _programme(conn)


async def _run(activity: object, *args: object) -> object:
    return await ActivityEnvironment().run(activity, *args)  # type: ignore[arg-type]


async def test_concurrent_approvals_end_as_a_serial_order_would(
    serializable: asyncpg.Pool,
) -> None:
    programme, apps = await programme_of(serializable)
    rng = random.Random(SEED)
    amounts = [rng.randint(1, 15) for _ in range(WRITERS)]  # about twice the budget in all
    assert sum(amounts) > BUDGET
    council = CouncilActivities(serializable)
    at = datetime.now(UTC)
    reservations = [
        Reservation(
            key=f"approval:{i}",
            programme_id=str(programme),
            application_id=str(apps[i % len(apps)]),
            amount_rub=amount,
            reason="approved",
            at=at,
        )
        for i, amount in enumerate(amounts)
    ]
    aborted = ABORTED["40001"]
    answers = await asyncio.gather(*(_run(council.reserve, r) for r in reservations))
    assert ABORTED["40001"] > aborted, "PostgreSQL aborted no reservation: nothing was retried"

    async with serializable.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key, amount_rub FROM ledger_entries WHERE programme_id = $1", programme
        )
    entries = {r["key"]: r["amount_rub"] for r in rows}
    reserved = sum(entries.values())
    granted = [r for r, a in zip(reservations, answers, strict=True) if a.ok]  # type: ignore[attr-defined]
    refused = [r for r, a in zip(reservations, answers, strict=True) if not a.ok]  # type: ignore[attr-defined]
    # Every writer got an answer (gather raised on none), and only a granted one left a line.
    assert len(answers) == WRITERS and set(entries) == {r.key for r in granted}
    assert reserved == sum(r.amount_rub for r in granted) <= BUDGET
    # A serial order of reservations only ever adds: whatever it refused did not fit even at
    # the end, and what it granted is on record at its full amount.
    assert all(r.amount_rub > BUDGET - reserved for r in refused)
    assert all(entries[r.key] == r.amount_rub for r in granted)
    assert granted and refused, "the budget should have run out part of the way"


async def test_concurrent_votes_keep_each_members_latest(serializable: asyncpg.Pool) -> None:
    programme, apps = await programme_of(serializable)
    async with serializable.acquire() as conn:
        user = await conn.fetchval("SELECT created_by FROM programmes WHERE id = $1", programme)
        session = uuid.uuid4()
        await conn.execute(
            """INSERT INTO council_sessions (id, programme_id, name, status, chair_id, quorum,
                   members, opened_by, opened_at)
               VALUES ($1, $2, 's', 'open', $3, 1, $4, $3, now())""",
            session,
            programme,
            user,
            [user],
        )
    rng = random.Random(SEED)
    start = datetime.now(UTC)
    member = Actor(user_id=str(user), role=Role.council, name="m")
    votes = [
        VoteRecord(
            session_id=str(session),
            vote=VoteRequest(
                application_id=str(apps[i % len(apps)]),
                choice=rng.choice(list(Choice)),
                reason=f"vote {i}",
                actor=member,
            ),
            at=start + timedelta(seconds=i),
        )
        for i in range(WRITERS)
    ]
    shuffled = rng.sample(votes, len(votes))
    council = CouncilActivities(serializable)
    aborted = ABORTED["40001"]
    await asyncio.gather(*(_run(council.record_vote, v) for v in shuffled))
    assert ABORTED["40001"] > aborted, "PostgreSQL aborted no vote: nothing was retried"

    async with serializable.acquire() as conn:
        rows = await conn.fetch(
            "SELECT application_id, reason FROM votes WHERE session_id = $1", session
        )
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_events"
            " WHERE kind = 'council_vote' AND application_id = ANY($1)",
            apps,
        )
    latest = {}
    for v in votes:  # in time order: a serial order keeps the last of each
        latest[v.vote.application_id] = v.vote.reason
    assert {str(r["application_id"]): r["reason"] for r in rows} == latest
    assert audited == WRITERS


# Each of two transactions adds one to both rows, in opposite orders.
TOUCH_SQL = "UPDATE applications SET reviews_submitted = reviews_submitted + 1 WHERE id = $1"
# PostgreSQL's own 40001, every time.
ALWAYS_ABORTED_SQL = """
DO $$ BEGIN
    RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure';
END $$"""


async def test_a_real_deadlock_victim_is_run_again(serializable: asyncpg.Pool) -> None:
    _, apps = await programme_of(serializable)
    rows = apps[:2]
    holds = [asyncio.Event(), asyncio.Event()]
    runs: Counter[int] = Counter()

    def crossing(me: int) -> Callable[[Conn], Awaitable[None]]:
        mine, theirs = rows[me], rows[1 - me]

        async def work(conn: Conn) -> None:
            runs[me] += 1
            await conn.execute(TOUCH_SQL, mine)
            holds[me].set()
            if runs[me] == 1:  # both hold a row: each now waits for the other's
                await holds[1 - me].wait()
            await conn.execute(TOUCH_SQL, theirs)

        return work

    aborted = ABORTED["40P01"]
    await asyncio.gather(
        in_transaction(serializable, crossing(0)), in_transaction(serializable, crossing(1))
    )

    assert ABORTED["40P01"] == aborted + 1  # PostgreSQL chose one victim
    assert sorted(runs.values()) == [1, 2]  # which ran once more, and got through
    touched = await serializable.fetch(
        "SELECT reviews_submitted FROM applications WHERE id = ANY($1)", rows
    )
    assert [r["reviews_submitted"] for r in touched] == [2, 2]  # both, once each


async def test_the_retries_are_bounded(serializable: asyncpg.Pool) -> None:
    calls = 0

    async def always_aborted(conn: Conn) -> None:
        nonlocal calls
        calls += 1
        await conn.execute(ALWAYS_ABORTED_SQL)

    aborted = ABORTED["40001"]
    with pytest.raises(asyncpg.exceptions.SerializationError):
        await in_transaction(serializable, always_aborted, attempts=3)
    assert calls == 3
    assert ABORTED["40001"] == aborted + 3
