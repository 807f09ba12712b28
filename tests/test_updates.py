"""An action waits for a worker to answer its Update, but not forever: the caller is told that
no worker is processing it (503) only when the same task of the workflow still waits for a
worker at the next look, never while a busy worker moves the workflow on from task to task,
however slowly (a council session's close deciding item after item on a loaded machine)."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any, cast

import pytest
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from grantflow.services.context import Resources
from grantflow.services.errors import Unavailable
from grantflow.services.updates import NO_ANSWER, NO_WORKER, answered
from grantflow.settings import Settings

pytestmark = pytest.mark.unit

LOOK = 0.02  # seconds between looks (worker_answer_seconds)


class Server:
    """What the server tells of the workflow at each look: the time its waiting task was first
    scheduled, or None when no task waits (a worker holds it)."""

    def __init__(self, tasks: list[str | None]) -> None:
        self.tasks = tasks
        self.looks = 0

    def get_workflow_handle(self, workflow_id: str) -> Server:
        return self

    async def describe(self) -> SimpleNamespace:
        first = self.tasks[min(self.looks, len(self.tasks) - 1)]
        self.looks += 1
        raw = DescribeWorkflowExecutionResponse()
        if first is not None:
            task = raw.pending_workflow_task
            task.state = PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
            task.original_scheduled_time.FromJsonString(first)
            task.scheduled_time.FromJsonString(first)
        return SimpleNamespace(raw_description=raw)


def _resources(server: Server) -> Resources:
    settings = Settings(database_url="unused", temporal_address="unused")
    settings = settings.model_copy(update={"worker_answer_seconds": LOOK})
    return Resources(settings, cast(Any, None), cast(Any, server))


async def _answer_after(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "closed: 50 decisions"


def _steps(n: int) -> list[str | None]:
    return [f"2026-12-03T14:38:{s:02d}Z" for s in range(n)]


async def test_a_busy_worker_moving_the_workflow_on_task_after_task_is_waited_for() -> None:
    # Every look finds a task waiting, but each time the next one: the worker takes them.
    server = Server(_steps(40))
    answer = await answered(_resources(server), "council-1", _answer_after(LOOK * 12))
    assert answer == "closed: 50 decisions"
    assert server.looks >= 5


async def test_an_update_a_worker_holds_is_waited_for() -> None:
    server = Server([None])
    answer = await answered(_resources(server), "council-1", _answer_after(LOOK * 8))
    assert answer == "closed: 50 decisions"


async def test_the_same_task_waiting_at_the_next_look_means_no_worker_is_up() -> None:
    server = Server(["2026-12-03T14:38:00Z"])
    with pytest.raises(Unavailable, match=NO_WORKER):
        await answered(_resources(server), "council-1", _answer_after(60))
    assert server.looks == 2


async def test_a_worker_that_stops_midway_is_found_gone_at_the_second_look_after() -> None:
    server = Server([*_steps(3), "2026-12-03T14:38:02Z"])
    with pytest.raises(Unavailable, match=NO_WORKER):
        await answered(_resources(server), "council-1", _answer_after(60))
    assert server.looks == 4


async def test_an_update_whose_answer_the_client_stopped_waiting_for_is_told_to_retry() -> None:
    async def timed_out() -> str:
        await asyncio.sleep(LOOK / 2)
        raise WorkflowUpdateRPCTimeoutOrCancelledError()

    with pytest.raises(Unavailable, match=NO_ANSWER):
        await answered(_resources(Server([None])), "review-1", timed_out())


async def test_a_refused_update_with_start_leaves_no_error_for_asyncio_to_log() -> None:
    """With Temporal down, the SDK sets the error both on the update-with-start and on its
    start operation's handle, which nobody awaits: before, every refused submission logged a
    "Future exception was never retrieved" traceback once collected. (`refused` does what
    the SDK's update-with-start does on a connection error.)"""
    run: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        "Application",
        id="application-1",
        task_queue="tq",
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )

    async def refused(start: WithStartWorkflowOperation[Any, Any]) -> str:
        error = RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b"")
        start._workflow_handle.set_exception(error)
        raise error

    logged: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: logged.append(context))
    try:
        with pytest.raises(Unavailable):
            await answered(_resources(Server([None])), "application-1", refused(run), started=run)
        del run
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [c["message"] for c in logged] == []
