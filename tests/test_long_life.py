"""A project's years of reporting at production durations (a report every 91 days, a financial
report every year, three project years) on the time-skipping test server: deadlines months
apart pass in moments, the agreement continues as new many times (at the test threshold), and
nothing is lost across it: reports and their states, the tranche schedule, pending
deadlines, an update that crossed the threshold.

The time-skipping server has no visibility API and skips no time while a client waits on an
Update, so this module drives the agreement through the HTTP API bound to its own client, and
moves the clock with `env.sleep` between updates. Its worker writes to a database of its own
on the session's PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres, find_binary
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.store import application, ledger, programme
from schemas.agreement import AgreementOutcome, AgreementStart, AgreementStatus
from schemas.application import ApplicationContent, ApplicationStart
from schemas.common import Actor, OrganisationType, Role
from schemas.council import Reservation
from schemas.programme import ProgrammeCreate, ProgrammeStart
from tests.conftest import (
    IN_FLIGHT,
    SESSION,
    RecordingSender,
    User,
    application_body,
    eventually,
    fresh_database,
    programme_body,
    record_runs,
    recording,
)
from tests.support import make_user
from workers.main import build_worker
from workflows import ids
from workflows.agreement import AgreementWorkflow

pytestmark = [SESSION, pytest.mark.slow]
DAY = timedelta(days=1)
PARAMS = {
    "agreement_window": "P14D",
    "tranche_interval": "P365D",
    "report_interval": "P91D",
    "financial_report_interval": "P365D",
    "reminder_lead_time": "P14D",
    "continue_as_new_after": 5,
}


@dataclass
class Skipping:
    env: WorkflowEnvironment
    pool: asyncpg.Pool
    api: httpx.AsyncClient
    task_queue: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def skipping(postgres: EmbeddedPostgres) -> AsyncIterator[Skipping]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    url = await fresh_database(postgres.url, f"grantflow_years_{uuid.uuid4().hex[:8]}")
    settings = Settings(
        task_queue=f"tq-{uuid.uuid4()}", database_url=url, temporal_address="unused-in-process"
    )
    pool = await create_pool(url, min_size=2, max_size=10)
    worker = build_worker(env.client, pool, settings.task_queue, sender=RecordingSender())
    app = create_app(settings, Resources(settings, pool, env.client))
    try:
        async with (
            worker,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://grantflow.test"
            ) as api,
        ):
            yield Skipping(env, pool, api, settings.task_queue)
            if recording():
                # No visibility API here to list them: the agreements, one per application.
                for row in await pool.fetch("SELECT id FROM applications"):
                    await record_runs(env.client, ids.agreement(row["id"]))
    finally:
        await pool.close()
        await env.shutdown()


async def approved_project(s: Skipping, applicant: User, now: datetime) -> AgreementStart:
    """What the council stage leaves behind: the programme, the application and the money
    reserved for it. Written straight to the module's database: this module is about the
    agreement's years, the council's tests cover how it gets here."""
    spec = ProgrammeCreate.model_validate(
        programme_body(
            intake_opens=(now - 400 * DAY).isoformat(),
            intake_closes=(now - 300 * DAY).isoformat(),
            params=PARAMS,
        )
    )
    programme_start = ProgrammeStart(
        programme_id=str(uuid.uuid4()), created_by=applicant.id, spec=spec
    )
    content = ApplicationContent.model_validate(
        {
            k: v
            for k, v in application_body(programme_start.programme_id, duration_months=36).items()
            if k != "programme_id"
        }
    )
    actor = Actor(
        user_id=applicant.id,
        role=Role.applicant,
        name=applicant.name,
        institution_id=applicant.institution_id,
    )
    start = ApplicationStart(
        application_id=str(uuid.uuid4()),
        applicant=actor,
        organisation_type=OrganisationType.medical_institution,
        programme=programme_start,
        content=content,
        submitted_at=now - 200 * DAY,
        request_digest=hashlib.sha256(b"years").hexdigest(),
    )
    async with s.pool.acquire() as conn, conn.transaction():
        await programme.insert(conn, programme_start)
        await application.insert(conn, start, f"application-{start.application_id}")
        reserved = await ledger.reserve(
            conn,
            Reservation(
                key=f"years:{start.application_id}:reserve",
                programme_id=programme_start.programme_id,
                application_id=start.application_id,
                amount_rub=content.requested_rub,
                reason="approved by the council",
                at=now,
            ),
        )
    assert reserved.ok
    return AgreementStart(
        application_id=start.application_id,
        programme_id=programme_start.programme_id,
        title=content.title,
        applicant=actor,
        amount_rub=content.requested_rub,
        duration_months=content.duration_months,
        params=spec.params,
    )


async def runs(client: Client, workflow_id: str, last_run: str) -> list[list[Any]]:
    """Every run's history, oldest first, following the chain back from `last_run`."""
    chain: list[list[Any]] = []
    run_id: str | None = last_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        chain.insert(0, list(history.events))
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    return chain


def record_count(events: list[Any]) -> int:
    """Changes recorded by a run so far: its `record_agreement` activities."""
    return sum(
        e.activity_task_scheduled_event_attributes.activity_type.name == "record_agreement"
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )


async def audit_kinds(pool: asyncpg.Pool, application_id: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT kind, reason FROM audit_events WHERE application_id = $1 ORDER BY at, id",
        uuid.UUID(application_id),
    )
    return [(r["kind"], r["reason"]) for r in rows]


class Years:
    """One project on the skipping clock, driven through the API as its users would."""

    def __init__(self, s: Skipping, start: AgreementStart, applicant: User, admin: User) -> None:
        self.s, self.start, self.applicant, self.admin = s, start, applicant, admin
        self.id = start.application_id
        self.id_ = f"agreement-{self.id}"
        self.handle: WorkflowHandle[Any, AgreementOutcome] = s.env.client.get_workflow_handle_for(
            AgreementWorkflow.run, f"agreement-{self.id}"
        )

    async def settled(self, check: Any) -> dict[str, Any]:
        """The read model once `check(state)` holds (the worker writes it in moments)."""

        async def now() -> dict[str, Any] | None:
            response = await self.s.api.get(
                f"/v1/applications/{self.id}/agreement", headers=self.applicant.headers
            )
            state = response.json() if response.status_code == 200 else None
            return state if state is not None and check(state) else None

        found: dict[str, Any] = await eventually(now, within=30)
        return found

    async def quiet_run(self) -> tuple[str, list[Any]]:
        """The current run, once it waits for a timer or an update: its id and events."""

        async def quiet() -> tuple[str, list[Any]] | None:
            described = await self.handle.describe()
            if described.run_id is None or described.status != WorkflowExecutionStatus.RUNNING:
                return None
            handle = self.s.env.client.get_workflow_handle(self.id_, run_id=described.run_id)
            events = list((await handle.fetch_history()).events)
            return None if events[-1].event_type in IN_FLIGHT else (described.run_id, events)

        found: tuple[str, list[Any]] = await eventually(quiet, within=30)
        return found

    async def until(self, at: datetime) -> None:
        """Let the skipping clock run to `at`."""
        ahead = at - await self.s.env.get_current_time()
        if ahead > timedelta(0):
            await self.s.env.sleep(ahead)

    async def submit(self, seq: int, body: str) -> dict[str, Any]:
        response = await self.s.api.post(
            f"/v1/applications/{self.id}/reports/{seq}",
            json={"body": body},
            headers=self.applicant.headers,
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def review(
        self, seq: int, accept: bool, by: User | None = None, **body: Any
    ) -> dict[str, Any]:
        """The admin's decision on report `seq`, or the assigned expert's (`by`)."""
        path = f"/v1/applications/{self.id}/reports/{seq}/decision"
        response = await self.s.api.post(
            path if by else f"/v1/admin{path.removeprefix('/v1')}",
            json={"accept": accept, "comment": "Reviewed.", **body},
            headers=(by or self.admin).headers,
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


async def test_three_project_years_continue_as_new_many_times_and_lose_nothing(
    skipping: Skipping,
) -> None:
    s = skipping
    applicant = await make_user(s.pool, Role.applicant)
    admin = await make_user(s.pool, Role.admin)
    expert = await make_user(s.pool, Role.reviewer, specialty="radiology")
    now = await s.env.get_current_time()
    start = await approved_project(s, applicant, now)
    await s.env.client.start_workflow(
        AgreementWorkflow.run,
        start,
        id=f"agreement-{start.application_id}",
        task_queue=s.task_queue,
    )
    years = Years(s, start, applicant, admin)
    offered = await years.settled(lambda st: st["status"] == "offered")
    assert [t["amount_rub"] for t in offered["tranches"]] == [10_000_000] * 3

    await years.until(now + 10 * DAY)
    accepted = await s.api.post(
        f"/v1/applications/{years.id}/agreement/acceptance", headers=applicant.headers
    )
    assert accepted.status_code == 200, accepted.text
    schedule = accepted.json()
    accepted_at = datetime.fromisoformat(schedule["accepted_at"])
    due = {r["seq"]: datetime.fromisoformat(r["due_at"]) for r in schedule["reports"]}
    kinds = [r["kind"] for r in schedule["reports"]]
    # Progress every 91 days, financial on each project anniversary before the end, final at 3 y.
    assert kinds == ["progress"] * 4 + ["financial"] + ["progress"] * 4 + ["financial"] + [
        "progress"
    ] * 4 + ["final"]
    assert [(due[seq] - accepted_at).days for seq in (1, 4, 5, 10, 14, 15)] == [
        91,
        364,
        365,
        730,
        1092,
        1095,
    ]
    tranche_dates = [t["due_at"] for t in schedule["tranches"]]

    # Year one: progress reports on time, a day before each deadline.
    for seq in (1, 2, 3, 4):
        await years.until(due[seq] - DAY)
        assert (await years.submit(seq, f"Quarter {seq}."))["status"] == "submitted"
        assert (await years.review(seq, True))["status"] == "accepted"

    # The first financial report is late: overdue escalation, and tranche 2 held back for it.
    await years.until(due[5] + 3 * DAY)
    late = await years.settled(
        lambda st: st["reports"][4]["overdue"] and st["tranches"][1]["status"] == "held"
    )
    assert late["tranches"][1]["held_reason"] == "report 5 is not accepted yet"
    mine = await s.api.get("/v1/me/notifications", headers=admin.headers)
    assert f"Financial report 5 overdue: {start.title}" in [
        n["subject"] for n in mine.json()["items"]
    ]
    assert (await years.submit(5, "Year one: 9.8 M spent."))["status"] == "submitted"
    assert (await years.review(5, False, comment="Attach the invoices."))["status"] == "returned"
    assert (await years.submit(5, "Year one: 9.8 M spent, invoices attached."))["overdue"]

    # An expert takes over the reports (each assignment is a change of the run, so they also
    # bring the run to one change short of its threshold of 5).
    run, events = await years.quiet_run()
    while record_count(events) != 4:
        assigned = await s.api.post(
            f"/v1/admin/applications/{years.id}/reports/reviewer",
            json={"reviewer_id": expert.id, "reason": "A second pair of eyes on the money."},
            headers=admin.headers,
        )
        assert assigned.status_code == 200, assigned.text
        run, events = await years.quiet_run()
    # The update that takes the run to its threshold is answered; the next run pays the
    # tranche it released.
    accepted5 = await years.review(5, True, by=expert, comment="Invoices match.")
    assert accepted5["status"] == "accepted"

    async def next_run() -> str | None:
        current, _ = await years.quiet_run()
        return current if current != run else None

    assert await eventually(next_run)
    ended = await s.env.client.get_workflow_handle(years.id_, run_id=run).fetch_history()
    kinds_of_end = [e.event_type for e in ended.events]
    assert kinds_of_end[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED in kinds_of_end[-6:]
    paid = await years.settled(lambda st: st["tranches"][1]["status"] == "released")
    assert paid["reports"][4]["status"] == "accepted" and paid["reports"][4]["overdue"]
    assert paid["disbursed_rub"] == 20_000_000
    assert paid["report_reviewer"]["user_id"] == expert.id

    # Year two and three: a report returned and resubmitted across runs, the rest on time.
    for seq in range(6, 15):
        await years.until(due[seq] - DAY)
        await years.submit(seq, f"Period {seq}.")
        if seq == 7:
            await years.review(seq, False, by=expert, comment="Which clinics?")
            await years.until(due[seq] + 20 * DAY)  # a deadline passes while it is returned
            await years.submit(seq, f"Period {seq}: clinics 5 and 12.")
        await years.review(seq, True, by=expert)
    await years.until(due[15] - 2 * DAY)
    await years.submit(15, "In routine use at two clinics.")
    closed = await years.review(15, True, outcome="implemented")
    assert closed["status"] == "accepted" and closed["final"]
    outcome = await years.handle.result()
    assert outcome.status == AgreementStatus.completed and outcome.disbursed_rub == 30_000_000

    final = await years.settled(lambda st: st["status"] == "completed")
    assert [r["status"] for r in final["reports"]] == ["accepted"] * 15
    assert [r["overdue"] for r in final["reports"]] == [i == 5 for i in range(1, 16)]
    assert [r["kind"] for r in final["reports"]] == kinds
    assert [t["due_at"] for t in final["tranches"]] == tranche_dates
    assert [t["status"] for t in final["tranches"]] == ["released"] * 3
    assert final["reports"][6]["body"] == "Period 7: clinics 5 and 12."

    # Many runs, each ending only after every update it accepted was answered.
    chain = await runs(s.env.client, years.handle.id, (await years.handle.describe()).run_id or "")
    assert len(chain) >= 10, len(chain)
    for events in chain:
        accepted_ids = {
            e.workflow_execution_update_accepted_event_attributes.protocol_instance_id
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        }
        completed_ids = {
            e.workflow_execution_update_completed_event_attributes.meta.update_id
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
        }
        assert len(accepted_ids) == len(completed_ids)
    # Every deadline on record once, whichever run it fell in: one reminder per report, one
    # overdue escalation (report 5's), and each tranche paid once.
    events = await audit_kinds(s.pool, years.id)
    reminders = sorted(r or "" for k, r in events if k == "report_reminder")
    assert reminders == sorted(f"report {seq}" for seq in range(1, 16))
    assert [r for k, r in events if k == "report_overdue"] == [
        f"report 5 was due {due[5].isoformat()}"
    ]
    assert [k for k, _ in events].count("tranche_released") == 3
    balance = await s.api.get(f"/v1/programmes/{start.programme_id}/ledger", headers=admin.headers)
    assert balance.json()["disbursed_rub"] == 30_000_000 and balance.json()["balanced"]
