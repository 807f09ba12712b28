"""What an open application is waiting for, from its workflows' own state.

The application's `waiting_for` Query answers for the stages it holds itself and names the
workflows (review, council session, agreement, pilot, its sites) that hold the rest; each of
those answers the same Query. Nothing is recomputed here: this only follows the `ask` links.
"""

from __future__ import annotations

import asyncio

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from schemas.application import ApplicationStatus
from schemas.common import Stage
from schemas.history import Waiting, WaitingAnswer, WaitingPublic
from workflows import ids
from workflows.application_book import STAGE

MAX_DEPTH = 4  # application -> pilot -> site is the deepest chain


class ApplicationNotFound(LookupError):
    """No workflow for this application id."""


async def waiting_for(client: Client, application_id: str) -> WaitingPublic:
    """Who must act next on the application, what, by when, and what happens otherwise."""
    handle = client.get_workflow_handle(ids.application(application_id))
    try:
        ended = ended_stage(await handle.describe())
        if ended is not None:
            return WaitingPublic(application_id=application_id, stage=ended, waiting=[])
        # A running workflow: its status and what it waits for, at once (a round trip saved;
        # what the second says is dropped when the first says the stage is final).
        status, found = await asyncio.gather(
            handle.query("status", result_type=ApplicationStatus),
            _ask(client, [handle.id], application_id, seen=set(), depth=0),
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ApplicationNotFound(application_id) from None
        raise
    if status.stage.is_final:
        return WaitingPublic(application_id=application_id, stage=status.stage, waiting=[])
    if not found and status.waiting_for is not None:
        # A workflow started before `waiting_for` existed: its status still says who acts.
        own = status.waiting_for
        found = [Waiting(workflow_id=handle.id, **own.model_dump())]
    return WaitingPublic(application_id=application_id, stage=status.stage, waiting=found)


def ended_stage(description: WorkflowExecutionDescription) -> Stage | None:
    """The final stage of an application whose workflow has completed, from its Stage search
    attribute (every stage change sets it, in the same workflow task); None while it runs, or
    when it ended otherwise (failed, terminated) or its attribute names no final stage.

    A completed workflow has left the worker's cache: a Query to it is answered by replaying
    its whole history (80 ms for one lifecycle's, on a loaded machine), to say what its
    attribute already says."""
    if description.status != WorkflowExecutionStatus.COMPLETED:
        return None
    try:
        stage = Stage(description.typed_search_attributes.get(STAGE) or "")
    except ValueError:  # none, or a stage this code does not know
        return None
    return stage if stage.is_final else None


async def _ask(
    client: Client, workflow_ids: list[str], application_id: str, *, seen: set[str], depth: int
) -> list[Waiting]:
    todo = [w for w in workflow_ids if w not in seen]
    seen.update(todo)
    if not todo or depth > MAX_DEPTH:
        return []
    answers = await asyncio.gather(*(_query(client, w) for w in todo))
    waiting: list[Waiting] = []
    for answer in answers:
        if answer is None:
            continue
        # A council session waits on many applications: keep this one's items.
        waiting += [w for w in answer.waiting if w.application_id in (None, application_id)]
        waiting += await _ask(client, answer.ask, application_id, seen=seen, depth=depth + 1)
    return waiting


async def _query(client: Client, workflow_id: str) -> WaitingAnswer | None:
    """The workflow's answer; None when it is gone or predates the Query."""
    try:
        answer: WaitingAnswer = await client.get_workflow_handle(workflow_id).query(
            "waiting_for", result_type=WaitingAnswer
        )
    except WorkflowQueryFailedError:
        return None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return answer
