"""An activity commits, then its worker dies before telling the server: the server runs it again.
A worker interceptor, installed only here, makes that happen to the first attempt of every
activity of a lifecycle (every kind of write: applications, reviews, votes, decisions, the
ledger, agreements, pilots, sites, reports): it lets the attempt commit, then fails it as a
crash would. The retry must leave every table exactly as it found it (the table digests before
and after it are equal) and answer what the first attempt answered."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from grantflow.dev.embedded import EmbeddedPostgres
from schemas.common import Role
from tests import test_pilot
from tests.conftest import SESSION, User, create_programme, table_digests, user_factory
from tests.faults import Cohort, duplicates, final_state, own_stack, until
from tests.test_council import Council
from tests.test_review import reaches
from workers.main import build_worker

pytestmark = [SESSION, pytest.mark.slow]
SEED = 81
COHORT = 4
FAULTS_PER_KIND = 1  # each retry waits for its backoff: the suite stays quick
READ_ONLY = {"find_report_reviewer"}  # reads only; its sibling find_evaluator is covered


class CommitThenDie(Interceptor):
    """Fails every activity's first attempt after it has run (and committed), as a worker that
    dies before reporting would; checks that the second attempt changes no table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # One activity at a time, so that the digests around a retry see its writes only.
        self.lock = asyncio.Lock()
        self.first: dict[tuple[str, str], Any] = {}
        self.faulted: Counter[str] = Counter()
        self.problems: list[str] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, hook: CommitThenDie) -> None:
        super().__init__(next)
        self.hook = hook

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info, hook = activity.info(), self.hook
        key = (info.workflow_id or "", info.activity_id)
        async with hook.lock:
            if info.attempt == 1:
                result = await super().execute_activity(input)
                if hook.faulted[info.activity_type] >= FAULTS_PER_KIND:
                    return result
                hook.first[key] = result
                hook.faulted[info.activity_type] += 1
            else:
                before = await table_digests(hook.pool)
                result = await super().execute_activity(input)
                after = await table_digests(hook.pool)
                changed = sorted(t for t in before if before[t] != after[t])
                if changed:
                    hook.problems.append(f"{info.activity_type} retried wrote to {changed}")
                if key in hook.first and result != hook.first[key]:
                    hook.problems.append(
                        f"{info.activity_type} retried answered {result!r}, "
                        f"first {hook.first[key]!r}"
                    )
                return result
        raise RuntimeError("the worker died after the commit, before reporting it")


def registered_activities(worker: Worker) -> set[str]:
    defns = [activity._Definition.must_from_callable(a) for a in worker._config["activities"]]
    return {d.name for d in defns if d.name}


async def withdrawn_in_council(council: Council, applicant: User) -> None:
    """An application withdrawn while the council approves it: the council gives its money
    back at once (the `release` write)."""
    members = await council.setup()
    app = await council.reviewed(applicant, 8)
    session = await council.session()
    for member in members:
        await council.vote(session, member, app, "approve")
    withdrawal = f"/v1/applications/{app['id']}/withdrawal"
    body = {"reason": "Funded elsewhere."}
    response = await council.stack.api.post(withdrawal, json=body, headers=applicant.headers)
    assert response.status_code == 200, response.text
    await reaches(council.stack, applicant, app["id"], "withdrawn")
    assert (await council.close(session)).status_code == 200

    async def released() -> bool:
        ledger = await council.ledger()
        return [e["kind"] for e in ledger["entries"]] == ["reserve", "release"]

    await until(released, what="the withdrawn application's money released")


async def corrected_programme(council: Council) -> None:
    """An admin corrects a programme's cap (the `record_correction` write)."""
    stack, admin = council.stack, council.admin
    programme = (await create_programme(stack, admin))["id"]
    fix = {"max_grant_rub": 40_000_000, "reason": "The cap was entered wrong."}
    url = f"/v1/admin/programmes/{programme}/corrections"
    corrected = await stack.api.post(url, json=fix, headers=admin.headers)
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["max_grant_rub"] == 40_000_000


@pytest.mark.timeout(240)
async def test_an_activity_retried_after_its_commit_changes_nothing(
    temporal_env: WorkflowEnvironment, postgres: EmbeddedPostgres
) -> None:
    async with own_stack(temporal_env.client, postgres.url, worker=False) as stack:
        hook = CommitThenDie(stack.pool)
        worker = build_worker(
            stack.client, stack.pool, stack.settings.task_queue, interceptors=[hook]
        )
        async with worker:
            await Cohort(stack, seed=SEED, size=COHORT).run()
            make = user_factory(stack)
            admin, applicant = await make(Role.admin), await make(Role.applicant)
            pilot = test_pilot.test_a_two_site_pilot_is_evaluated_and_implemented_then_the_final_report_closes_it  # noqa: E501
            await pilot(Council(stack, admin, make), applicant)
            await withdrawn_in_council(Council(stack, admin, make), applicant)
            await corrected_programme(Council(stack, admin, make))
        assert hook.problems == []
        # Every kind of write the worker can do was made to crash after its commit.
        writes = registered_activities(worker) - READ_ONLY
        assert set(hook.faulted) >= writes, writes - set(hook.faulted)
        assert await duplicates(stack.pool) == {}
        assert len(await final_state(stack.pool)) == COHORT + 2
