"""Workflows against their Postgres rows: every application's stage, change number, amounts and
outcome as its workflow holds them (the `record` query, or the result of a closed workflow)
against what the read model says. `grantflow check` and `grantflow simulate` both use it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from grantflow.store import Db
from grantflow.store import application as rows_store
from schemas.application import ApplicationRecord
from schemas.common import Stage
from workflows.application import ApplicationWorkflow

QUERY_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True)
class Disagreement:
    """One field on which an application's workflow and its row differ."""

    application_id: str
    workflow_id: str
    field: str
    workflow: str
    database: str


@dataclass(frozen=True)
class CheckResult:
    checked: int
    disagreements: list[Disagreement]

    @property
    def consistent(self) -> bool:
        return not self.disagreements

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "consistent": self.consistent,
            "disagreements": [asdict(d) for d in self.disagreements],
        }


async def check(
    db: Db,
    client: Client,
    programme_id: str | None = None,
    *,
    every: bool = False,
    settle: float = 1.0,
    concurrency: int = 16,
) -> CheckResult:
    """Compare every open application (and every final one whose workflow still runs; with
    `every`, all of them) with its workflow; a workflow closed under an open row is a
    disagreement too. What disagrees
    is read again once after `settle` seconds, since a workflow may be between its state
    change and the write that records it: only what still disagrees is reported."""
    programme = uuid.UUID(programme_id) if programme_id else None
    rows = await rows_store.for_check(db, programme)
    running = await _running_ids(client, programme_id)
    wanted = [
        r for r in rows if every or not Stage(r["stage"]).is_final or r["workflow_id"] in running
    ]
    found = await _compare_all(client, wanted, concurrency)
    if found:
        await asyncio.sleep(settle)
        again = await rows_store.for_check(
            db, programme, sorted({uuid.UUID(d.application_id) for d in found})
        )
        found = await _compare_all(client, again, concurrency)
    return CheckResult(checked=len(rows), disagreements=found)


async def _running_ids(client: Client, programme_id: str | None) -> set[str]:
    query = "WorkflowType = 'Application' AND ExecutionStatus = 'Running'"
    if programme_id:
        query += f" AND ProgrammeId = '{uuid.UUID(programme_id)}'"  # a parsed uuid: no injection
    return {w.id async for w in client.list_workflows(query)}


async def _compare_all(
    client: Client, rows: list[asyncpg.Record], concurrency: int
) -> list[Disagreement]:
    gate = asyncio.Semaphore(concurrency)

    async def one(row: asyncpg.Record) -> list[Disagreement]:
        async with gate:
            return await compare(client, row)

    found = await asyncio.gather(*(one(r) for r in rows))
    return [d for ds in found for d in ds]


async def compare(client: Client, row: asyncpg.Record) -> list[Disagreement]:
    """The disagreements between one row and its workflow (none when they agree)."""
    app_id, wf_id = str(row["id"]), row["workflow_id"]

    def differs(field: str, workflow: object, database: object) -> Disagreement:
        return Disagreement(app_id, wf_id, field, _show(workflow), _show(database))

    handle = client.get_workflow_handle_for(ApplicationWorkflow.run, wf_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return [differs("workflow", "missing", row["stage"])]
    status = described.status
    if status != WorkflowExecutionStatus.RUNNING:
        return await _closed(handle, status, row, differs)
    try:
        record = await handle.query(ApplicationWorkflow.record, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        return [differs("workflow", f"query failed: {exc.message}", row["stage"])]
    return _against(record, row, differs)


async def _closed(
    handle: Any, status: WorkflowExecutionStatus | None, row: asyncpg.Record, differs: Any
) -> list[Disagreement]:
    """A closed workflow: a completed one still answers its query (replayed by a worker) and
    returned its final stage, which the row must show; any other end (terminated, failed,
    cancelled, timed out) under an open row is a disagreement."""
    name = status.name.lower() if status else "unknown"
    if status == WorkflowExecutionStatus.COMPLETED:
        try:
            record = await handle.query(ApplicationWorkflow.record, rpc_timeout=QUERY_TIMEOUT)
        except RPCError:  # no worker to replay it: its result is the final stage
            stage: Stage = await handle.result()
            return [] if stage == row["stage"] else [differs("stage", stage, row["stage"])]
        return _against(record, row, differs)
    if Stage(row["stage"]).is_final:
        return []
    return [differs("workflow", name, row["stage"])]


def _against(record: ApplicationRecord, row: asyncpg.Record, differs: Any) -> list[Disagreement]:
    pairs: list[tuple[str, object, object]] = [
        ("stage", record.stage.value, row["stage"]),
        ("stage_seq", record.seq, row["stage_seq"]),
        ("requested_rub", record.requested_rub, row["requested_rub"]),
        ("approved_rub", record.approved_rub, row["approved_rub"]),
        ("outcome", record.outcome.value if record.outcome else None, row["outcome"]),
    ]
    return [differs(field, mine, theirs) for field, mine, theirs in pairs if mine != theirs]


def _show(value: object) -> str:
    return "—" if value is None else str(value)
