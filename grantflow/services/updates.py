"""Updates that wait for a worker, but not forever.

Temporal holds an Update until a worker takes up the workflow's task, however long that is:
with every worker down, a submission waited without end. Here the wait is bounded: every
`worker_answer_seconds` without an answer, the server is asked which task of the workflow waits
for a worker; when the same task was already waiting at the previous look, no worker has taken
it up for that long and the caller is told so (Unavailable, 503). A worker that is merely slow
keeps its caller waiting: on a loaded machine, an Update that works through many steps (a
session's close deciding fifty items, each step a task of its own) moves on from task to task,
though each task may wait seconds for the busy worker. (Any task seen waiting at two looks a
second apart was taken for no worker: such opens and closes were refused while they went on.)

The Update stays with the server and takes effect once a worker is back, so the caller's retry
is safe: a submission's retry with its Idempotency-Key finds the same application. Every
service sends its Updates this way (`send`, or `answered` for an update-with-start)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.workflow import UpdateMethodMultiParam

from grantflow.services.context import Resources
from grantflow.services.errors import Unavailable, temporal_refusals

T = TypeVar("T")
W = TypeVar("W")
A = TypeVar("A")

NO_WORKER = "no worker is processing this action; try again shortly"
NO_WORKER_SUBMISSION = (
    "no worker is processing applications; try again — your Idempotency-Key makes the retry safe"
)
NO_ANSWER = "the action was taken but not answered in time; try again shortly to see it done"
_WAITING = PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED


async def send(
    res: Resources,
    handle: WorkflowHandle[W, Any],
    update: UpdateMethodMultiParam[[W, A], T],
    arg: A,
) -> T:
    """The answer to the Update `update` with `arg` on the workflow of `handle`, as `answered`
    gives it."""
    return await answered(res, handle.id, handle.execute_update(update, arg))


async def answered(
    res: Resources,
    workflow_id: str,
    update: Awaitable[T],
    *,
    started: WithStartWorkflowOperation[Any, Any] | None = None,
    submission: bool = False,
) -> T:
    """The answer to `update`, an Update (or an update-with-start of the operation `started`)
    of the workflow `workflow_id`, with Temporal's refusals mapped as `temporal_refusals` does;
    Unavailable when no worker takes it up (for a `submission`, with the hint that its
    Idempotency-Key makes the retry safe)."""
    pending = asyncio.ensure_future(update)
    try:
        with temporal_refusals():
            waiting: str | None = None
            while True:
                done, _ = await asyncio.wait({pending}, timeout=res.settings.worker_answer_seconds)
                if done:
                    try:
                        return pending.result()
                    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
                        # The client's wait for the outcome ran out (a worker starved for a
                        # minute): the server keeps the Update, as with no worker (was a 500).
                        raise Unavailable(NO_ANSWER) from exc
                seen = await waiting_task(res.client, workflow_id)
                if seen is not None and seen == waiting:
                    raise Unavailable(NO_WORKER_SUBMISSION if submission else NO_WORKER)
                waiting = seen
    finally:
        await _abandon(pending)
        if started is not None:
            _forget_start(started)


async def waiting_task(client: Client, workflow_id: str) -> str | None:
    """Which task of the workflow waits for a worker to take it up (when it was first
    scheduled: a task moved from a stopped worker's sticky queue to the shared one keeps
    it), or None when none waits: the Update was taken up and waits on something else."""
    raw = (await client.get_workflow_handle(workflow_id).describe()).raw_description
    if not raw.HasField("pending_workflow_task"):
        return None
    task = raw.pending_workflow_task
    if task.state != _WAITING:
        return None
    first = task.original_scheduled_time if task.HasField("original_scheduled_time") else None
    return (first or task.scheduled_time).ToJsonString()


def _forget_start(started: WithStartWorkflowOperation[Any, Any]) -> None:
    """A refused update-with-start also sets the error on its start operation's handle, which
    nobody awaits: asyncio would log it, traceback and all, as "Future exception was never
    retrieved" (one per refused submission while Temporal is down). The SDK keeps that future
    private and offers only a wait on it, which never ends when the start was not tried."""
    handle = started._workflow_handle
    if handle.done() and not handle.cancelled():
        handle.exception()


async def _abandon(pending: asyncio.Future[T]) -> None:
    """Stop waiting for an Update that was not answered (the server keeps it)."""
    if not pending.done():
        pending.cancel()
        await asyncio.wait({pending})
    if not pending.cancelled():
        pending.exception()  # retrieved: asyncio would log it as never retrieved otherwise
