"""A representative part of the lifecycle tests again, on a worker without a workflow cache
(`max_cached_workflows=0`): every workflow task replays the workflow from its history before
it runs, so a workflow whose commands depend on anything but its history (or a handler that is
not deterministic) fails here, on every step, rather than after a worker's restart in
production. Each test runs unchanged, only its users reach a second API whose workflows go to
this worker's task queue.

The council and pilot lifecycles take longer here (about 20 and 35 s): the SDK evicts a
zero-cache run while its local activities are still in flight (temporalio/sdk-rust#1482), so such a
task times out (10 s) and runs its write again, which the write's idempotency
absorbs. The reports across continue-as-new (tests/test_pilot.py) owe a report every second and
are not repeated here; their runs are replayed from their histories at the session's end
(`replay_everything` in conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from grantflow.api.app import create_app
from grantflow.services.context import Resources
from tests import test_application, test_council, test_pilot, test_review
from tests.conftest import PATIENCE, SESSION, RecordingSender, Stack, User, UserFactory
from tests.test_council import Council
from tests.test_review import Competition
from workers.main import build_worker

pytestmark = [SESSION, pytest.mark.slow]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uncached(stack: Stack) -> AsyncIterator[Stack]:
    """The session's servers and database, a worker that caches no workflow, on a task queue
    of its own, and an API that starts its workflows there."""
    settings = stack.settings.model_copy(update={"task_queue": f"tq-uncached-{uuid.uuid4()}"})
    sender = RecordingSender()
    worker = build_worker(
        stack.client, stack.pool, settings.task_queue, sender=sender, max_cached_workflows=0
    )
    app = create_app(settings, Resources(settings, stack.pool, stack.client))
    transport = httpx.ASGITransport(app=app)
    async with (
        worker,
        httpx.AsyncClient(transport=transport, base_url="http://grantflow.test") as api,
    ):
        yield Stack(
            settings, stack.client, stack.pool, api, stack.database_url, stack.server_url, sender
        )


Lifecycle = Callable[[Stack, User, UserFactory, User], Awaitable[None]]


async def _intake(stack: Stack, admin: User, make_user: UserFactory, applicant: User) -> None:
    await test_application.test_a_revision_in_time_is_screened_again(stack, admin, applicant)


async def _review(stack: Stack, admin: User, make_user: UserFactory, applicant: User) -> None:
    competition = Competition(stack, admin, make_user)
    await test_review.test_divergent_scores_add_one_more_expert_once(competition, admin, applicant)


async def _council(stack: Stack, admin: User, make_user: UserFactory, applicant: User) -> None:
    council = Council(stack, admin, make_user)
    await test_council.test_the_majority_decides_and_an_approval_takes_the_smallest_amount_named(
        council, applicant
    )


async def _pilot(stack: Stack, admin: User, make_user: UserFactory, applicant: User) -> None:
    council = Council(stack, admin, make_user)
    await test_pilot.test_a_two_site_pilot_is_evaluated_and_implemented_then_the_final_report_closes_it(  # noqa: E501
        council, applicant
    )


LIFECYCLES: dict[str, Lifecycle] = {
    "intake-revision": _intake,
    "review-divergent-scores": _review,
    "council-majority": _council,
    "pilot-to-close": _pilot,
}
# The workflow types each lifecycle runs at the least.
RUNS = {
    "intake-revision": {"Programme", "Application"},
    "review-divergent-scores": {"Programme", "Application", "Review"},
    "council-majority": {"Programme", "Application", "Review", "CouncilSession"},
    "pilot-to-close": {
        "Programme",
        "Application",
        "Review",
        "CouncilSession",
        "Agreement",
        "Pilot",
        "PilotSite",
    },
}


# Every workflow task replays its whole history first: slower than the cached run by design.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(LIFECYCLES))
async def test_the_lifecycle_holds_when_every_task_replays_its_history(
    name: str, uncached: Stack, admin: User, make_user: UserFactory, applicant: User
) -> None:
    PATIENCE.set(4.0)
    started = datetime.now(UTC) - timedelta(seconds=1)
    await LIFECYCLES[name](uncached, admin, make_user, applicant)
    # This lifecycle's workflows really ran on the uncached worker.
    query = (
        f"TaskQueue = '{uncached.settings.task_queue}' "
        f"AND StartTime >= '{started.isoformat().replace('+00:00', 'Z')}'"
    )
    ran = {w.workflow_type async for w in uncached.client.list_workflows(query)}
    assert RUNS[name] <= ran, (name, sorted(ran))
