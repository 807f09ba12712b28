"""Updates that wait for a worker, but not forever.

Temporal holds an Update until a worker takes up the workflow's task, however long that is:
with every worker down, a submission waited without end. Here the wait is bounded: when the
Update has had no answer for `worker_answer_seconds`, the server is asked whether a worker has
taken up the workflow's task; if none has, the caller is told so (Unavailable, 503). A worker
that is merely slow (a long screening, a loaded machine) keeps its caller waiting as before.

The Update stays with the server and takes effect once a worker is back, so the caller's retry
is safe: a submission's retry with its Idempotency-Key finds the same application. Every
service sends its Updates this way (`send`, or `answered` for an update-with-start)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import Client, WorkflowHandle
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
    res: Resources, workflow_id: str, update: Awaitable[T], *, submission: bool = False
) -> T:
    """The answer to `update`, an Update (or update-with-start) of the workflow `workflow_id`,
    with Temporal's refusals mapped as `temporal_refusals` does; Unavailable when no worker
    takes it up (for a `submission`, with the hint that its Idempotency-Key makes the retry
    safe)."""
    pending = asyncio.ensure_future(update)
    try:
        with temporal_refusals():
            while True:
                done, _ = await asyncio.wait({pending}, timeout=res.settings.worker_answer_seconds)
                if done:
                    return pending.result()
                if await no_worker(res.client, workflow_id):
                    raise Unavailable(NO_WORKER_SUBMISSION if submission else NO_WORKER)
    finally:
        await _abandon(pending)


async def no_worker(client: Client, workflow_id: str, recheck: float = 1.0) -> bool:
    """Whether the workflow has a task that no worker has taken. A live worker takes one in
    milliseconds, but a task can be waiting at the moment it is looked at (just after a timed
    out one was scheduled again), so it must be seen waiting twice, `recheck` seconds apart."""
    for look in range(2):
        if look:
            await asyncio.sleep(recheck)
        raw = (await client.get_workflow_handle(workflow_id).describe()).raw_description
        if not raw.HasField("pending_workflow_task"):
            return False  # the Update was taken up and waits on something else
        if raw.pending_workflow_task.state != _WAITING:
            return False
    return True


async def _abandon(pending: asyncio.Future[T]) -> None:
    """Stop waiting for an Update that was not answered (the server keeps it)."""
    if not pending.done():
        pending.cancel()
        await asyncio.wait({pending})
    if not pending.cancelled():
        pending.exception()  # retrieved: asyncio would log it as never retrieved otherwise
