"""What the fault tests share: a grantflow of their own (database, task queue, API) on servers of
the session or of the test, a worker in a process of its own that can be killed, a seeded cohort
of applications driven through the lifecycle by its users, a fault dealt amid one of the
worker's writes (tests/fault_evidence.py then tells what it cut short), and the final state the
cohort leaves, without the ids that differ from run to run."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.worker import Interceptor

from grantflow.api.app import create_app
from grantflow.db import ACQUIRE_TIMEOUT, COMMAND_TIMEOUT, create_pool
from grantflow.dev.children import worker_polls
from grantflow.services.context import Resources
from grantflow.settings import Settings
from schemas.common import Role
from tests.conftest import (
    RecordingSender,
    Stack,
    User,
    application_body,
    fresh_database,
    user_factory,
)
from tests.fault_evidence import Fault, install_slow_writes, slow_writes, writes_in_flight
from tests.support import GrantflowProcess
from tests.support import duplicates as duplicates
from tests.test_council import Council
from workers.main import build_worker
from workflows.review import UNKNOWN_TASK

WITHIN = 120.0  # bounded waits: longer than an activity's timeout after a crash (30 s)
IN_PROCESS_WORKER = "worker-0"
WRITE_SECONDS = 0.6  # how long a write lasts while a fault waits for one to strike in
CAUGHT_WITHIN = 0.3  # a write started less than this ago is still running when the fault lands


@asynccontextmanager
async def own_stack(
    client: Client,
    server_url: str,
    *,
    worker: bool = True,
    interceptors: Sequence[Interceptor] = (),
    command_timeout: float = COMMAND_TIMEOUT,
    acquire_timeout: float = ACQUIRE_TIMEOUT,
) -> AsyncIterator[Stack]:
    """A fresh database on `server_url` (with tests/fault_evidence.py's trigger, unarmed), a
    task queue of its own, the API in-process and (unless the test runs its own) an
    in-process worker; their pools bounded by `command_timeout` and `acquire_timeout`."""
    database_url = await fresh_database(server_url, f"faults_{uuid.uuid4().hex[:10]}")
    settings = Settings(
        task_queue=f"tq-faults-{uuid.uuid4()}",
        database_url=database_url,
        temporal_address=client.service_client.config.target_host,
    )

    async def pool_of(url: str, size: int) -> asyncpg.Pool:
        return await create_pool(
            url,
            min_size=2,
            max_size=size,
            command_timeout=command_timeout,
            acquire_timeout=acquire_timeout,
        )

    pool = await pool_of(database_url, 20)
    # The in-process worker's connections are named as a worker's, for fault_evidence.py.
    worker_pool = await pool_of(f"{database_url}?application_name={IN_PROCESS_WORKER}", 10)
    await install_slow_writes(pool)
    sender = RecordingSender()
    app = create_app(settings, Resources(settings, pool, client))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://grantflow.test") as api:
            stack = Stack(settings, client, pool, api, database_url, server_url, sender)
            if not worker:
                yield stack
                return
            running = build_worker(
                client, worker_pool, settings.task_queue, sender=sender, interceptors=interceptors
            )
            async with running:
                yield stack
    finally:
        await pool.close()
        await worker_pool.close()


class WorkerProcess(GrantflowProcess):
    """`grantflow worker` in a process of its own, on the stack's database and task queue, as
    production runs it; its output goes to a file of the test's. Each start names its
    database connections `worker-<n>` (tests/fault_evidence.py watches their writes)."""

    def __init__(self, stack: Stack, log: Path) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GRANTFLOW_")},
            "TEMPORAL_ADDRESS": str(stack.settings.temporal_address),
            "GRANTFLOW_TASK_QUEUE": stack.settings.task_queue,
            "GRANTFLOW_HOME": str(log.parent / "home"),
            "GRANTFLOW_LOG_FORMAT": "json",
        }
        super().__init__("worker", env, log)
        self.database_url = str(stack.settings.database_url)
        self.starts = 0
        self.name = ""

    def start(self, **env: str) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        self.name = f"worker-{self.starts}"
        super().start(DATABASE_URL=f"{self.database_url}?application_name={self.name}", **env)

    async def start_polling(self, client: Client, task_queue: str) -> None:
        """Start it and wait until it polls: a user's first write would otherwise wait on no
        worker (503) for as long as a loaded machine takes to start a Python process."""
        self.start()
        try:
            await until(lambda: self.polling(client, task_queue), what=f"{self.name} polling")
        except BaseException:
            print(self.output())
            self.stop()
            raise

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.output()
        super().kill()

    def send_sigterm(self) -> None:
        """SIGTERM, as an orchestrator stops a worker (see `wait`)."""
        assert self.process is not None and self.process.poll() is None, self.output()
        self.process.send_signal(signal.SIGTERM)

    def wait(self, within: float) -> int:
        """Its exit code, once it exited."""
        assert self.process is not None
        return self.process.wait(within)

    async def polling(self, client: Client, task_queue: str) -> bool:
        """Whether this process's worker polls the task queue for activities yet."""
        assert self.process is not None
        return await worker_polls(client, task_queue, self.identity)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            super().kill()


# --- a seeded cohort of applications -----------------------------------------------------------

PLANS = ("approve", "reject", "defer", "withdraw", "decline")


async def until(check: Any, *, within: float = WITHIN, what: str = "", every: float = 0.2) -> Any:
    """Poll `check` (an async callable) every `every` s until truthy; fail with `what` and its
    last value."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"{what} not reached within {within}s; last: {last!r}")


Target = Callable[[list[str], list[str]], list[str]]


def any_write(writing: list[str], _: list[str]) -> list[str]:
    return writing


async def strike_amid_write(
    stack: Stack,
    cohort: Cohort,
    writer: str,
    strike: Callable[[], object],
    what: str,
    *,
    target: Target = any_write,
    identity: str = "",
) -> Fault:
    """Slow the writes of the worker whose connections are named `writer` down, wait for one
    that `target` picks (from the workflows written and the users' writes awaited), then
    `strike` at once, while that write is still running. The writes stay slow: the caller
    calls `slow_writes(pool, 0)` once the database answers again."""
    await slow_writes(stack.pool, WRITE_SECONDS)
    loop = asyncio.get_running_loop()

    async def caught() -> Fault | None:
        writing = await writes_in_flight(stack.pool, writer, CAUGHT_WITHIN)
        awaited = [a for a in cohort.awaited.values() if a.startswith("POST")]
        if not (picked := target(writing, awaited)):
            return None
        return Fault(what, datetime.now(UTC), loop.time(), identity, picked, awaited)

    try:
        fault: Fault = await until(caught, what=f"a write for {what} by {writer}", every=0.05)
    except BaseException:
        await slow_writes(stack.pool, 0)
        raise
    await asyncio.to_thread(strike)
    return fault


@dataclass
class Answer:
    """One answer the API gave: to what, when it was asked (event loop time), how long it
    took and its status."""

    request: str
    asked: float
    took: float
    status: int


@dataclass
class Cohort:
    """`size` applications whose fate (and scores) the seed decides, driven by their applicants,
    reviewers, council members and the admin through the API, concurrently."""

    stack: Stack
    seed: int
    size: int
    plans: list[str] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)
    apps: list[dict[str, Any]] = field(default_factory=list)
    applicants: list[User] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    unavailable: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    awaited: dict[int, str] = field(default_factory=dict)  # the requests not answered yet
    _asked: Iterator[int] = field(default_factory=itertools.count)
    started: asyncio.Event = field(default_factory=asyncio.Event)  # users made, programme open
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # the council session closes

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.plans = [rng.choice(PLANS) for _ in range(self.size)]
        self.scores = [rng.randint(3, 9) for _ in range(self.size)]

    def expected_stages(self) -> list[str]:
        """Where each application ends, by its plan: what a run must reach, faults or not."""
        ends = {"approve": "agreement", "decline": "withdrawn", "reject": "rejected"}
        ends |= {"defer": "deferred", "withdraw": "withdrawn"}
        return [ends[plan] for plan in self.plans]

    async def run(self) -> None:
        make = user_factory(self.stack)
        admin = await make(Role.admin)
        self.council = Council(self.stack, admin, make)
        members = await self.council.setup()
        self.applicants = [await make(Role.applicant) for _ in range(4)]
        self.started.set()
        self.apps = [{}] * self.size
        await asyncio.gather(*(self._to_review(i) for i in range(self.size)))
        session = await self._call("post", self._sessions(), 201, admin, json=self._session())
        agenda = {item["application_id"] for item in session["agenda"]}
        voted = [i for i, p in enumerate(self.plans) if p != "withdraw"]
        assert agenda == {self.apps[i]["id"] for i in voted}, session
        # One member's votes one after the other: a workflow takes 10 updates in flight at most.
        await asyncio.gather(*(self._votes(session, m, voted) for m in members))
        closed = f"/v1/council-sessions/{session['session_id']}/close"
        self.closing.set()
        await self._call("post", closed, 200, admin)
        await asyncio.gather(*(self._after_council(i) for i in voted))

    def answered_across(self, clock: float) -> list[Answer]:
        """The answers to the requests that were awaited at `clock` (event loop time)."""
        return [a for a in self.answers if a.asked <= clock <= a.asked + a.took]

    def _sessions(self) -> str:
        return f"/v1/programmes/{self.council.programme['id']}/council-sessions"

    def _session(self) -> dict[str, Any]:
        return {"name": "Cohort session", "member_ids": [m.id for m in self.council.members]}

    async def _call(
        self, method: str, url: str, status: int, user: User, **kw: Any
    ) -> dict[str, Any]:
        response = await self.request(method, url, user, **kw)
        if response.status_code in (404, 409) and response.extensions.get("after_503"):
            # A write answered 503 may have been applied before the server went away: its
            # retry then finds the step done (a finished review is 404, an accepted task 409).
            # The waits that follow check where the application really is.
            return {}
        assert response.status_code == status, f"{method} {url}: {response.text}"
        found: dict[str, Any] = response.json()
        return found

    async def request(self, method: str, url: str, user: User, **kw: Any) -> httpx.Response:
        """As a client does: a 503 ("try again shortly") is tried again, for a bounded time.
        Every answer is kept (its status, when it was asked, how long it took), so that a
        test can tell that no request got a 500 nor waited past a bound; and what is awaited
        at any moment, so that a test can tell a fault struck while users waited."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WITHIN
        headers = {**user.headers, **kw.pop("headers", {})}
        unavailable = False
        while True:
            asked, n, what = loop.time(), next(self._asked), f"{method.upper()} {url}"
            self.awaited[n] = what
            try:
                response = await self.stack.api.request(method, url, headers=headers, **kw)
            finally:
                del self.awaited[n]
            self.statuses[response.status_code] += 1
            self.answers.append(Answer(what, asked, loop.time() - asked, response.status_code))
            response.extensions["after_503"] = unavailable
            if response.status_code != 503 or loop.time() > deadline:
                return response
            unavailable = True
            self.unavailable.append(response.json()["detail"])
            await asyncio.sleep(0.5)

    async def _stage(self, i: int, stage: str) -> None:
        url = f"/v1/applications/{self.apps[i]['id']}"
        applicant = self.applicants[i % len(self.applicants)]

        async def check() -> bool:
            app = await self._call("get", url, 200, applicant)
            return bool(app["stage"] == stage)

        await until(check, what=f"application {i} {stage}")

    async def _to_review(self, i: int) -> None:
        applicant = self.applicants[i % len(self.applicants)]
        body = application_body(
            self.council.programme["id"], specialty=self.council.specialty, title=f"Cohort {i}"
        )
        headers = {"Idempotency-Key": f"cohort-{i}"}
        response = await self.request(
            "post", "/v1/applications", applicant, json=body, headers=headers
        )
        assert response.status_code in (200, 201), response.text
        self.apps[i] = response.json()
        reviewer = await until(lambda: self._offered(i), what=f"application {i} offered")
        if self.plans[i] == "withdraw":  # once offered, so that every run cancels the offer
            url = f"/v1/applications/{self.apps[i]['id']}/withdrawal"
            await self._call("post", url, 200, applicant, json={"reason": "Changed plans."})
            return
        scores = dict.fromkeys(("clinical_value", "novelty", "feasibility"), self.scores[i])
        review = {"scores": scores, "recommendation": "fund", "comments": f"Score {i}."}
        task = f"/v1/reviews/{reviewer[1]}"
        await self._task_action(f"{task}/acceptance", reviewer[0])
        await self._task_action(f"{task}/review", reviewer[0], json=review)
        await self._stage(i, "reviewed")

    async def _task_action(self, url: str, reviewer: User, **kw: Any) -> None:
        """A reviewer's action. A task is in the inbox from the moment its offer is on record;
        its workflow knows it once the offer's activity has reported back, which after a crash
        or an outage can take up to the activity's timeout: until then the API refuses the
        action (409, "no such review task") and the reviewer tries again."""

        async def done() -> bool:
            response = await self.request("post", url, reviewer, **kw)
            if response.status_code == 409 and response.json()["detail"] == UNKNOWN_TASK:
                return False
            if response.status_code in (404, 409) and response.extensions.get("after_503"):
                return True  # applied before the outage's 503: see _call
            assert response.status_code == 200, f"post {url}: {response.text}"
            return True

        await until(done, what=f"{url} taken")

    async def _offered(self, i: int) -> tuple[User, str] | None:
        for reviewer in self.council.reviewers:
            inbox = await self._call("get", "/v1/reviews", 200, reviewer)
            for task in inbox["items"]:
                if task["application_id"] == self.apps[i]["id"] and task["status"] == "offered":
                    return reviewer, task["task_id"]
        return None

    async def _votes(self, session: dict[str, Any], member: User, items: list[int]) -> None:
        url = f"/v1/council-sessions/{session['session_id']}/votes"
        for i in items:
            choice = {"decline": "approve"}.get(self.plans[i], self.plans[i])
            body = {"application_id": self.apps[i]["id"], "choice": choice, "reason": "Planned."}
            await self._call("post", url, 200, member, json=body)

    async def _after_council(self, i: int) -> None:
        plan = self.plans[i]
        stage = {"reject": "rejected", "defer": "deferred"}.get(plan, "approved")
        await self._stage(i, stage)
        if plan not in ("approve", "decline"):
            return
        applicant = self.applicants[i % len(self.applicants)]
        url = f"/v1/applications/{self.apps[i]['id']}/agreement"
        await until(lambda: self._agreement(i, "offered"), what=f"agreement {i} offered")
        if plan == "approve":
            await self._call("post", f"{url}/acceptance", 200, applicant)
            await self._stage(i, "agreement")
        else:
            await self._call("post", f"{url}/decline", 200, applicant, json={"reason": "No."})
            await until(lambda: self._agreement(i, "declined"), what=f"agreement {i} declined")
            await self._stage(i, "withdrawn")

    async def _agreement(self, i: int, status: str) -> bool:
        applicant = self.applicants[i % len(self.applicants)]
        url = f"/v1/applications/{self.apps[i]['id']}/agreement"
        response = await self.request("get", url, applicant)
        return response.status_code == 200 and response.json()["status"] == status


# --- what a run leaves behind -----------------------------------------------------------------


async def settled(stack: Stack, within: float = WITHIN) -> None:
    """Wait until no workflow of the stack has an activity or a workflow task pending: what
    follows a user's last request (a cancelled review's record, a notification) is written."""
    query = f"TaskQueue = '{stack.settings.task_queue}' AND ExecutionStatus = 'Running'"

    async def idle() -> bool:
        async for execution in stack.client.list_workflows(query):
            handle = stack.client.get_workflow_handle(execution.id, run_id=execution.run_id)
            raw = (await handle.describe()).raw_description
            if raw.pending_activities or raw.HasField("pending_workflow_task"):
                return False
        return True

    await until(idle, within=within, what="every workflow idle")


FINAL_SQL = """
SELECT a.content->>'title' AS title, a.stage, a.review_score::text AS score, a.approved_rub,
  (SELECT status FROM agreements g WHERE g.application_id = a.id) AS agreement,
  (SELECT array_agg(t.status ORDER BY t.seq) FROM tranches t WHERE t.application_id = a.id)
      AS tranches,
  (SELECT array_agg(l.kind || ' ' || l.amount_rub ORDER BY l.kind, l.amount_rub)
      FROM ledger_entries l WHERE l.application_id = a.id) AS ledger,
  (SELECT array_agg(e.kind ORDER BY e.kind) FROM audit_events e WHERE e.application_id = a.id)
      AS audit,
  (SELECT array_agg(n.kind ORDER BY n.kind) FROM notifications n WHERE n.application_id = a.id)
      AS notifications,
  (SELECT count(*) FROM reviews r WHERE r.application_id = a.id) AS reviews,
  (SELECT count(*) FROM votes v WHERE v.application_id = a.id) AS votes,
  (SELECT count(*) FROM decisions d WHERE d.application_id = a.id) AS decisions
FROM applications a ORDER BY title"""


async def final_state(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every application as its users would find it, by title (the same in every run)."""
    rows = await pool.fetch(FINAL_SQL)
    return [dict(r) for r in rows]


def stages(state: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(row["stage"]) for row in state)


def reached(cohort: Cohort, state: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """The applications whose stage is not the one their plan leads to: (found, expected)."""
    found = {row["title"]: row["stage"] for row in state}
    return {
        f"Cohort {i}": (found.get(f"Cohort {i}", "missing"), stage)
        for i, stage in enumerate(cohort.expected_stages())
        if found.get(f"Cohort {i}") != stage
    }
