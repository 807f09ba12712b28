"""One application's history: its audit trail merged with the Temporal event histories of its
workflow, its children (found from ChildWorkflowExecutionStarted events) and the council
sessions that signalled it, every run across continue-as-new, in plain words and time order.

A council session serves many applications: only its events that concern this application
(their input names it) and its own start and end are kept.

Order: a workflow's database writes are local activities, run inside a workflow task; the audit
events they write carry the workflow's time, the task's start, while the server writes the
task's events (an accepted Update, the activities' markers) when it completes. So an accepted
Update is dated when its task started (`Run.happened_at`), and at the same instant a Temporal
event comes before an audit event: the Update, then what its handler wrote, then the activity
that wrote it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from grantflow.services.translate import Run, kind_of, local_activity_data, translate
from grantflow.services.waiting import waiting_for
from grantflow.store import Db, audit
from schemas.history import HistoryActor, HistoryEntry, HistoryPublic
from workflows import ids

E = EventType
MAX_RUNS = 1000  # runs followed back per workflow: decades of a monthly continue-as-new
LIFECYCLE = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    E.EVENT_TYPE_WORKFLOW_TASK_FAILED,
}


class Links:
    """Temporal Web UI addresses: one event of one run, or a workflow's runs."""

    def __init__(self, ui_url: str, namespace: str) -> None:
        self.base = f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows"

    def event(self, workflow_id: str, run_id: str, event_id: int) -> str:
        return f"{self.base}/{quote(workflow_id, safe='')}/{run_id}/history/events/{event_id}"

    def run(self, workflow_id: str, run_id: str) -> str:
        return f"{self.base}/{quote(workflow_id, safe='')}/{run_id}/history"

    def workflow(self, workflow_id: str) -> str:
        query = quote(f'WorkflowId="{workflow_id}"', safe="")
        return f"{self.base}?query={query}"


async def application_history(
    client: Client, db: Db, application_id: uuid.UUID, *, ui_url: str
) -> HistoryPublic:
    """The merged history and what the application waits for now. Raises
    grantflow.services.waiting.ApplicationNotFound when no workflow has this id."""
    history, _rows = await merged_history(client, db, application_id, ui_url=ui_url)
    return history


async def merged_history(
    client: Client, db: Db, application_id: uuid.UUID, *, ui_url: str, technical: bool = True
) -> tuple[HistoryPublic, list[Any]]:
    """`application_history`, and the audit rows it merged. Without `technical`, the workflow
    events are not put in words (its entries are the audit events alone, each still linking
    to its run): for a page that shows them only when asked."""
    app = str(application_id)
    # Independent reads, at once: the page waits for the slowest, not for their sum.
    waiting, runs, rows = await asyncio.gather(
        waiting_for(client, app), collect(client, app), audit.history(db, application_id)
    )
    links = Links(ui_url, client.namespace)
    entries = [e for run in runs for e in temporal_entries(run, app, links)] if technical else []
    entries += [audit_entry(row, runs, links) for row in rows]
    # Stable: at the same instant (a run continued as new and its successor's start; an
    # accepted Update and the audit events its handler wrote) the Temporal events, in the
    # order of the runs and of each run's events, come first.
    entries.sort(key=lambda e: e.at)
    history = HistoryPublic(
        application_id=app,
        stage=waiting.stage,
        waiting=waiting.waiting,
        workflows=[f"{r.workflow_id}/{r.run_id}" for r in runs],
        entries=entries,
    )
    return history, rows


# --- the workflows -----------------------------------------------------------------------------


async def collect(client: Client, application_id: str) -> list[Run]:
    """Every run of the application's workflow, of its children (recursively) and of the
    council sessions that signalled it."""
    root = ids.application(application_id)
    seen, runs, frontier = {root}, list[Run](), [root]
    while frontier:
        found = await asyncio.gather(*(runs_of(client, w) for w in frontier))
        frontier = []
        for workflow_runs in found:
            runs += workflow_runs
            for run in workflow_runs:
                if _is_shared(run):
                    continue  # a council session's links lead to other applications
                linked = [w for w in _linked(run) if w not in seen]
                seen.update(linked)
                frontier += linked
    return runs


async def runs_of(client: Client, workflow_id: str) -> list[Run]:
    """The workflow's runs, oldest first, following the continue-as-new chain back from the
    latest; none when there is no such workflow.

    The latest run's history is asked for by the workflow id alone, with no describe first (a
    round trip per level of children saved); its run id is its started event's, as the SDK's
    `WorkflowHistory.run_id` reads it."""
    runs: list[Run] = []
    run_id: str | None = None
    while len(runs) < MAX_RUNS:
        try:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND and not runs:
                return []
            raise
        events = list(history.events)
        started = events[0].workflow_execution_started_event_attributes
        runs.append(Run(workflow_id, run_id or history.run_id, started.workflow_type.name, events))
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            break
    return runs[::-1]


def _is_shared(run: Run) -> bool:
    return run.workflow_type == "CouncilSession"


def _linked(run: Run) -> list[str]:
    """Children this run started, and the council sessions that signalled it."""
    linked = []
    for event in run.events:
        if event.event_type == E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            a = event.child_workflow_execution_started_event_attributes
            linked.append(a.workflow_execution.workflow_id)
        elif event.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            sender = event.workflow_execution_signaled_event_attributes.external_workflow_execution
            if ids.is_council(sender.workflow_id):
                linked.append(sender.workflow_id)
    return list(dict.fromkeys(linked))


# --- entries -------------------------------------------------------------------------------


def temporal_entries(run: Run, application_id: str, links: Links) -> list[HistoryEntry]:
    entries = []
    for event in run.events:
        if _is_shared(run) and not _concerns(event, run, application_id):
            continue
        line = translate(event, run)
        if line is None:
            continue
        entries.append(
            HistoryEntry(
                at=run.happened_at(event),
                source="temporal",
                workflow_id=run.workflow_id,
                run_id=run.run_id,
                event_id=event.event_id,
                kind=kind_of(event),
                text=line.text,
                actor=line.actor,
                link=links.event(run.workflow_id, run.run_id, event.event_id),
            )
        )
    return entries


def _concerns(event: HistoryEvent, run: Run, application_id: str) -> bool:
    """An event of a shared workflow concerns the application when it is the workflow's own
    start or end, or when its input (or its activity's or update's input) names it. A local
    activity's marker records no input: it concerns the application when its workflow task
    was about it (an Update or a signal of the same task names it)."""
    if event.event_type in LIFECYCLE:
        return True
    if _names(event, run, application_id):
        return True
    if local_activity_data(event) is None:
        return False
    task = run.tasks.get(run.task_of.get(event.event_id, 0), [])
    return any(
        _names(other, run, application_id)
        for other in task
        if other.event_type != E.EVENT_TYPE_MARKER_RECORDED
    )


def _names(event: HistoryEvent, run: Run, application_id: str) -> bool:
    source = _input_event(event, run)
    if source is None:
        return False
    target = ""
    if source.HasField("signal_external_workflow_execution_initiated_event_attributes"):
        a = source.signal_external_workflow_execution_initiated_event_attributes
        target = a.workflow_execution.workflow_id
    return application_id in target or application_id.encode() in source.SerializeToString()


def _input_event(event: HistoryEvent, run: Run) -> HistoryEvent | None:
    """The event that carries the input of what `event` reports on."""
    attrs = event.WhichOneof("attributes") or ""
    if attrs.startswith("activity_task_") and attrs != "activity_task_scheduled_event_attributes":
        return run.by_id.get(getattr(event, attrs).scheduled_event_id)
    if event.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
        completed = event.workflow_execution_update_completed_event_attributes
        return run.by_id.get(completed.accepted_event_id)
    return event


def audit_entry(row: Any, runs: list[Run], links: Links) -> HistoryEntry:
    actor = None
    if row["actor_id"] is not None or row["actor_role"] is not None:
        actor = HistoryActor(
            user_id=str(row["actor_id"]) if row["actor_id"] else None,
            role=row["actor_role"],
            name=row["actor_name"],
        )
    return HistoryEntry(
        at=row["at"],
        source="audit",
        workflow_id=row["workflow_id"],
        kind=row["kind"],
        text=audit_text(row["kind"], row["stage"], actor, row["reason"], row["detail"]),
        actor=actor,
        link=_run_link(row["workflow_id"], row["at"], runs, links),
    )


def audit_text(
    kind: str, stage: str | None, actor: HistoryActor | None, reason: str | None, detail: Any
) -> str:
    """`review_declined` by a reviewer with a reason -> "review declined by reviewer Dr. X:
    conflict of interest"."""
    text = kind.replace("_", " ")
    if stage:
        text += f" (stage {stage})"
    if actor is not None:
        text += f" by {actor.role} {actor.name or actor.user_id}"
    if reason:
        text += f": {reason}"
    values = json.loads(detail) if isinstance(detail, str) else detail or {}
    facts = [
        f"{k}={v}"
        for k, v in values.items()
        if isinstance(v, str | int | float | bool) and k not in ("content",) and len(str(v)) < 80
    ]
    return text + (f" [{', '.join(facts)}]" if facts else "")


def _run_link(workflow_id: str, at: datetime, runs: list[Run], links: Links) -> str:
    """The run of the workflow that was current at `at`: the last one started by then (or the
    first, for what the API recorded just before starting it)."""
    own = [r for r in runs if r.workflow_id == workflow_id]
    if not own:
        return links.workflow(workflow_id)
    current = own[0]
    for run in own:
        if run.events[0].event_time.ToDatetime(tzinfo=UTC) <= at:
            current = run
    return links.run(workflow_id, current.run_id)
