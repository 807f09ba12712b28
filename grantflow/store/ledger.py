"""The programme's budget ledger: append-only entries, and reservations that can never take
the programme over its budget, however many arrive at once."""

from __future__ import annotations

import uuid

from grantflow.store import Conn, Db
from schemas.council import LedgerBalance, LedgerEntry, Reservation, Reserved

# The programme row is the ledger's lock: reservations of one programme queue behind it, so each
# sees every reservation committed before it.
LOCK_PROGRAMME_SQL = "SELECT budget_rub FROM programmes WHERE id = $1 FOR UPDATE"
ENTRY_SQL = "SELECT kind, amount_rub FROM ledger_entries WHERE key = $1"
COMMITTED_SQL = """
SELECT coalesce(sum(CASE kind WHEN 'reserve' THEN amount_rub
                              WHEN 'release' THEN -amount_rub ELSE 0 END), 0)::bigint
FROM ledger_entries WHERE programme_id = $1"""
APPLICATION_BALANCE_SQL = """
SELECT coalesce(sum(CASE kind WHEN 'reserve' THEN amount_rub
                              WHEN 'release' THEN -amount_rub
                              WHEN 'disburse' THEN -amount_rub END), 0)::bigint
FROM ledger_entries WHERE application_id = $1"""
INSERT_ENTRY_SQL = """
INSERT INTO ledger_entries (key, programme_id, application_id, kind, amount_rub, reason, at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (key) DO NOTHING"""
ENTRIES_SQL = """
SELECT id, application_id, kind, amount_rub, reason, at
FROM ledger_entries WHERE programme_id = $1 ORDER BY id"""
BUDGET_SQL = "SELECT budget_rub FROM programmes WHERE id = $1"


async def reserve(conn: Conn, r: Reservation) -> Reserved:
    """Reserve `amount_rub` for an approval if the budget allows; call in a transaction.
    A key already on record answers as it did the first time. A refusal writes nothing: the
    ledger shows money, not attempts, and the same approval asked again (a retry, the chair
    again, the session's close) is decided on the budget as it stands then."""
    programme = uuid.UUID(r.programme_id)
    budget = await conn.fetchval(LOCK_PROGRAMME_SQL, programme)
    committed = await conn.fetchval(COMMITTED_SQL, programme)
    if (seen := await conn.fetchrow(ENTRY_SQL, r.key)) is not None:
        return Reserved(ok=seen["amount_rub"] > 0, remaining_rub=budget - committed)
    if committed + r.amount_rub > budget:
        return Reserved(ok=False, remaining_rub=budget - committed)
    await _insert(conn, r, "reserve")
    return Reserved(ok=True, remaining_rub=budget - committed - r.amount_rub)


async def release(conn: Conn, r: Reservation) -> int:
    """Give back what is left of the application's reservation, at most `amount_rub`; returns
    the amount released (0 when nothing was left)."""
    await conn.fetchval(LOCK_PROGRAMME_SQL, uuid.UUID(r.programme_id))
    if (seen := await conn.fetchrow(ENTRY_SQL, r.key)) is not None:
        return int(seen["amount_rub"])
    left = await conn.fetchval(APPLICATION_BALANCE_SQL, uuid.UUID(r.application_id))
    amount = max(0, min(left, r.amount_rub))
    await _insert(conn, r.model_copy(update={"amount_rub": amount}), "release")
    return int(amount)


async def disburse(conn: Conn, r: Reservation) -> bool:
    """Pay out a tranche from the application's reservation; False if it does not cover it."""
    await conn.fetchval(LOCK_PROGRAMME_SQL, uuid.UUID(r.programme_id))
    if (seen := await conn.fetchrow(ENTRY_SQL, r.key)) is not None:
        return bool(seen["amount_rub"] > 0)
    left = await conn.fetchval(APPLICATION_BALANCE_SQL, uuid.UUID(r.application_id))
    paid: bool = r.amount_rub <= int(left)
    await _insert(conn, r if paid else r.model_copy(update={"amount_rub": 0}), "disburse")
    return paid


async def _insert(conn: Conn, r: Reservation, kind: str) -> None:
    await conn.execute(
        INSERT_ENTRY_SQL,
        r.key,
        uuid.UUID(r.programme_id),
        uuid.UUID(r.application_id),
        kind,
        r.amount_rub,
        r.reason,
        r.at,
    )


async def balance(db: Db, programme_id: uuid.UUID) -> LedgerBalance | None:
    """The ledger recomputed from its entries, with every rule it must hold checked."""
    budget = await db.fetchval(BUDGET_SQL, programme_id)
    if budget is None:
        return None
    rows = await db.fetch(ENTRIES_SQL, programme_id)
    entries = [
        LedgerEntry(
            id=r["id"],
            application_id=str(r["application_id"]),
            kind=r["kind"],
            amount_rub=r["amount_rub"],
            reason=r["reason"],
            at=r["at"],
        )
        for r in rows
    ]
    reserved = disbursed = 0
    per_application: dict[str, int] = {}
    problems: list[str] = []
    for e in entries:
        sign = {"reserve": 1, "release": -1, "disburse": -1}[e.kind]
        per_application[e.application_id] = per_application.get(e.application_id, 0) + (
            sign * e.amount_rub
        )
        if e.kind == "reserve":
            reserved += e.amount_rub
        elif e.kind == "release":
            reserved -= e.amount_rub
        else:
            disbursed += e.amount_rub
        if reserved > budget:
            problems.append(f"entry {e.id}: {reserved} reserved, over the budget {budget}")
        if per_application[e.application_id] < 0:
            problems.append(f"entry {e.id}: application {e.application_id} below zero")
    if disbursed > reserved:
        problems.append(f"disbursed {disbursed} exceeds reserved {reserved}")
    return LedgerBalance(
        programme_id=str(programme_id),
        budget_rub=budget,
        reserved_rub=reserved,
        disbursed_rub=disbursed,
        remaining_rub=budget - reserved,
        balanced=not problems,
        problems=problems,
        entries=entries,
    )
