"""What an open application is waiting for, from its workflows' own state.

The application's `waiting_for` Query answers for the stages it holds itself and names the
workflows (review, council session, agreement, pilot, its sites) that hold the rest; each of
those answers the same Query. Nothing is recomputed here: this only follows the `ask` links.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from schemas.application import ApplicationStatus
from schemas.history import Waiting, WaitingAnswer, WaitingPublic
from workflows import ids

MAX_DEPTH = 4  # application -> pilot -> site is the deepest chain


class ApplicationNotFound(LookupError):
    """No workflow for this application id."""


async def waiting_for(client: Client, application_id: str) -> WaitingPublic:
    """Who must act next on the application, what, by when, and what happens otherwise."""
    handle = client.get_workflow_handle(ids.application(application_id))
    try:
        status = await handle.query("status", result_type=ApplicationStatus)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ApplicationNotFound(application_id) from None
        raise
    if status.stage.is_final:
        return WaitingPublic(application_id=application_id, stage=status.stage, waiting=[])
    found = await _ask(client, [handle.id], application_id, seen=set(), depth=0)
    if not found and status.waiting_for is not None:
        # A workflow started before `waiting_for` existed: its status still says who acts.
        own = status.waiting_for
        found = [Waiting(workflow_id=handle.id, **own.model_dump())]
    return WaitingPublic(application_id=application_id, stage=status.stage, waiting=found)


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
