"""Temporal history events in plain words: the one translation table.

Each entry maps an event type to a function that returns the line an admin reads (and the
acting user, when the event carries one), or None for bookkeeping events that say nothing an
admin needs (workflow tasks, an activity's scheduling: its completion says it all, the SDK's
patch markers). An event type missing from the table still gets a generic, readable line.

A local activity has no activity events: the SDK records its outcome in a marker
(`core_local_activity`) when the workflow task that ran it completes, with its type and last
attempt in `details["data"]` and its failure, if it failed, in the marker's `failure`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent

from schemas.history import HistoryActor

E = EventType


@dataclass
class Run:
    """One run of one workflow, with its events indexed for the lookups translations need (each
    index built when first used: a page that does not put the events in words needs none)."""

    workflow_id: str
    run_id: str
    workflow_type: str
    events: list[HistoryEvent]

    @cached_property
    def by_id(self) -> dict[int, HistoryEvent]:
        return {e.event_id: e for e in self.events}

    @cached_property
    def closed_timers(self) -> set[str]:
        closed = set()
        for e in self.events:
            if e.event_type == E.EVENT_TYPE_TIMER_FIRED:
                closed.add(e.timer_fired_event_attributes.timer_id)
            elif e.event_type == E.EVENT_TYPE_TIMER_CANCELED:
                closed.add(e.timer_canceled_event_attributes.timer_id)
        return closed

    @property
    def tasks(self) -> dict[int, list[HistoryEvent]]:
        """The events a workflow task's completion wrote (its commands, markers and Update
        messages), by the id of its WorkflowTaskCompleted event."""
        return self._task_index[0]

    @property
    def task_of(self) -> dict[int, int]:
        """Each such event's task."""
        return self._task_index[1]

    @cached_property
    def _task_index(self) -> tuple[dict[int, list[HistoryEvent]], dict[int, int]]:
        tasks: dict[int, list[HistoryEvent]] = {}
        task_of: dict[int, int] = {}
        last_task = 0
        for e in self.events:
            if e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                last_task = e.event_id
                continue
            task = _completed_by(e) or (last_task if e.event_type in UPDATE_MESSAGES else 0)
            if task:
                task_of[e.event_id] = task
                tasks.setdefault(task, []).append(e)
        return tasks, task_of

    def happened_at(self, event: HistoryEvent) -> datetime:
        """When the event happened. The server writes an accepted Update when the workflow
        task that accepted it completes, after the local activities it ran; the workflow
        accepted it when that task started (what `workflow.now()`, and so the audit events its
        local activities write, read), so that is its time. Every other event: its own time."""
        if event.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            completed = self.by_id.get(self.task_of.get(event.event_id, 0))
            if completed is not None:
                a = completed.workflow_task_completed_event_attributes
                started = self.by_id.get(a.started_event_id)
                if started is not None:
                    return started.event_time.ToDatetime(tzinfo=UTC)
        return event.event_time.ToDatetime(tzinfo=UTC)


# Written by a workflow task's completion, but without saying which one.
UPDATE_MESSAGES = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
}


def _completed_by(event: HistoryEvent) -> int:
    """The WorkflowTaskCompleted event whose commands wrote this event (0 when none did)."""
    attrs = event.WhichOneof("attributes")
    if attrs is None:
        return 0
    value = getattr(event, attrs)
    if "workflow_task_completed_event_id" not in value.DESCRIPTOR.fields_by_name:
        return 0
    task: int = value.workflow_task_completed_event_id
    return task


@dataclass(frozen=True)
class Line:
    text: str
    actor: HistoryActor | None = None


Translation = Callable[[HistoryEvent, Run], Line | None]


def kind_of(event: HistoryEvent) -> str:
    """`EVENT_TYPE_ACTIVITY_TASK_COMPLETED` -> `ActivityTaskCompleted`, as the Web UI names it."""
    return _kind(event.event_type)


@cache  # a few dozen event types, and a history's every event asks
def _kind(event_type: EventType.ValueType) -> str:
    name = E.Name(event_type).removeprefix("EVENT_TYPE_")
    return "".join(part.capitalize() for part in name.split("_"))


def translate(event: HistoryEvent, run: Run) -> Line | None:
    """The event in plain words, None for bookkeeping."""
    found = TRANSLATIONS.get(event.event_type, _generic)
    return found(event, run) if found is not None else None


def decode(payload: Payload) -> Any:
    """A JSON payload's value (what the pydantic converter writes); None for anything else."""
    if payload.metadata.get("encoding") != b"json/plain":
        return None
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def failure_text(failure: Failure) -> str:
    parts = [failure.message or failure.application_failure_info.type or "failed"]
    if failure.HasField("cause") and failure.cause.message:
        parts.append(failure.cause.message)
    return ": ".join(parts)


def _times(n: int) -> str:
    return f"{n} time" if n == 1 else f"{n} times"


def _generic(event: HistoryEvent, run: Run) -> Line:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", kind_of(event)).lower()
    return Line(f"{words} (event {event.event_id})")


# --- the workflow itself ---------------------------------------------------------------------


def _wf_started(event: HistoryEvent, run: Run) -> Line:
    a = event.workflow_execution_started_event_attributes
    text = f"workflow {a.workflow_type.name} started"
    if a.parent_workflow_execution.workflow_id:
        text += f" by {a.parent_workflow_execution.workflow_id}"
    if a.continued_execution_run_id:
        text += f", continuing run {a.continued_execution_run_id}"
    return Line(text)


def _wf_failed(event: HistoryEvent, run: Run) -> Line:
    failure = event.workflow_execution_failed_event_attributes.failure
    return Line(f"workflow {run.workflow_type} failed: {failure_text(failure)}")


def _wf_continued(event: HistoryEvent, run: Run) -> Line:
    new_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return Line(f"workflow {run.workflow_type} continued as new in run {new_run}")


def _wf_cancel_requested(event: HistoryEvent, run: Run) -> Line:
    a = event.workflow_execution_cancel_requested_event_attributes
    by = a.external_workflow_execution.workflow_id or a.identity
    return Line(f"cancellation of workflow {run.workflow_type} requested by {by or 'a client'}")


def _wf_terminated(event: HistoryEvent, run: Run) -> Line:
    a = event.workflow_execution_terminated_event_attributes
    return Line(f"workflow {run.workflow_type} terminated: {a.reason or 'no reason given'}")


def _wf_task_failed(event: HistoryEvent, run: Run) -> Line:
    a = event.workflow_task_failed_event_attributes
    name = WorkflowTaskFailedCause.Name(a.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
    return Line(f"workflow task failed ({name.lower()}): {failure_text(a.failure)}")


def _closed(verb: str) -> Translation:
    return lambda event, run: Line(f"workflow {run.workflow_type} {verb}")


# --- activities and timers -------------------------------------------------------------------


def _activity(run: Run, scheduled_id: int, started_id: int) -> tuple[str, int]:
    scheduled = run.by_id.get(scheduled_id)
    name = (
        scheduled.activity_task_scheduled_event_attributes.activity_type.name if scheduled else "?"
    )
    started = run.by_id.get(started_id)
    attempt = started.activity_task_started_event_attributes.attempt if started else 1
    return name, attempt


def _activity_completed(event: HistoryEvent, run: Run) -> Line:
    a = event.activity_task_completed_event_attributes
    name, attempt = _activity(run, a.scheduled_event_id, a.started_event_id)
    if attempt <= 1:
        return Line(f"activity {name} completed")
    started = run.by_id[a.started_event_id].activity_task_started_event_attributes
    why = failure_text(started.last_failure)
    return Line(f"activity {name} retried {_times(attempt - 1)}: {why}; then completed")


def _activity_failed(event: HistoryEvent, run: Run) -> Line:
    a = event.activity_task_failed_event_attributes
    name, attempt = _activity(run, a.scheduled_event_id, a.started_event_id)
    return Line(f"activity {name} failed after {attempt} attempt(s): {failure_text(a.failure)}")


def _activity_timed_out(event: HistoryEvent, run: Run) -> Line:
    a = event.activity_task_timed_out_event_attributes
    name, attempt = _activity(run, a.scheduled_event_id, a.started_event_id)
    return Line(f"activity {name} timed out after {attempt} attempt(s): {failure_text(a.failure)}")


def _activity_canceled(event: HistoryEvent, run: Run) -> Line:
    a = event.activity_task_canceled_event_attributes
    name, _ = _activity(run, a.scheduled_event_id, a.started_event_id)
    return Line(f"activity {name} cancelled")


def _timer_name(run: Run, started_id: int) -> str:
    started = run.by_id.get(started_id)
    summary = decode(started.user_metadata.summary) if started else None
    return summary if isinstance(summary, str) and summary else "timer"


def _timer_started(event: HistoryEvent, run: Run) -> Line | None:
    """Only a timer still pending says something (what the workflow sleeps until); the others
    show up when they fire, and a cancelled one never mattered."""
    a = event.timer_started_event_attributes
    if a.timer_id in run.closed_timers:
        return None
    fires = event.event_time.ToDatetime() + a.start_to_fire_timeout.ToTimedelta()
    return Line(f"timer {_timer_name(run, event.event_id)} set: fires {fires.isoformat()}Z")


def _timer_fired(event: HistoryEvent, run: Run) -> Line:
    started = event.timer_fired_event_attributes.started_event_id
    return Line(f"timer {_timer_name(run, started)} fired")


LOCAL_ACTIVITY_MARKER = "core_local_activity"
# The SDKs' own markers: which code path (patch, version) or value a run took, for replay.
BOOKKEEPING_MARKERS = {"core_patch", "Version", "SideEffect", "MutableSideEffect"}


def _marker(event: HistoryEvent, run: Run) -> Line | None:
    name = event.marker_recorded_event_attributes.marker_name
    if name == LOCAL_ACTIVITY_MARKER:
        return _local_activity(event, run)
    if name in BOOKKEEPING_MARKERS:
        return None
    return Line(f"marker {name} recorded")


def local_activity_data(event: HistoryEvent) -> dict[str, Any] | None:
    """A local activity marker's LocalActivityMarkerData (activity_type, attempt, backoff,
    complete_time...); None for any other event."""
    if event.event_type != E.EVENT_TYPE_MARKER_RECORDED:
        return None
    a = event.marker_recorded_event_attributes
    if a.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in a.details:
        return None
    payloads = a.details["data"].payloads
    data = decode(payloads[0]) if payloads else None
    return data if isinstance(data, dict) else None


def _local_activity(event: HistoryEvent, run: Run) -> Line:
    data = local_activity_data(event) or {}
    name = data.get("activity_type") or "?"
    attempt = int(data.get("attempt") or 1)
    a = event.marker_recorded_event_attributes
    if not a.HasField("failure"):
        if attempt <= 1:
            return Line(f"activity {name} completed")
        retried = f"activity {name} retried {_times(attempt - 1)}"
        why = _backed_off_before(run, event, name, attempt)
        if why is None:
            # A local activity retries inside the worker: only its last attempt is recorded.
            return Line(
                f"{retried} (a local activity's failed attempts are not recorded); then completed"
            )
        return Line(f"{retried}: {why}; then completed")
    failure = a.failure
    if failure.HasField("canceled_failure_info"):
        return Line(f"activity {name} cancelled")
    backoff = data.get("backoff")
    if isinstance(backoff, dict):
        # Retried later, after a timer: a new marker reports the next attempts.
        seconds = int(backoff.get("seconds") or 0)
        return Line(
            f"activity {name} failed on attempt {attempt}: {failure_text(failure)}; "
            f"retrying in {seconds} s"
        )
    verb = "timed out" if failure.HasField("timeout_failure_info") else "failed"
    return Line(f"activity {name} {verb} after {attempt} attempt(s): {failure_text(failure)}")


def _backed_off_before(run: Run, event: HistoryEvent, name: str, attempt: int) -> str | None:
    """Why the attempt before `attempt` failed, when it was recorded: it ended in a marker
    that backed off (with a timer) before the last attempts."""
    before = [e for e in run.events if e.event_id < event.event_id]
    for earlier in reversed(before):
        data = local_activity_data(earlier)
        if data is None or data.get("activity_type") != name or not data.get("backoff"):
            continue
        if int(data.get("attempt") or 0) == attempt - 1:
            return failure_text(earlier.marker_recorded_event_attributes.failure)
        return None
    return None


# --- messages: updates and signals -----------------------------------------------------------


def actor_in(payloads: Any) -> HistoryActor | None:
    """The acting user, when the message's argument carries one (every human action does)."""
    for payload in payloads:
        value = decode(payload)
        if isinstance(value, dict) and isinstance(value.get("actor"), dict):
            actor = value["actor"]
            return HistoryActor(
                user_id=actor.get("user_id"), role=actor.get("role"), name=actor.get("name")
            )
    return None


def _update_accepted(event: HistoryEvent, run: Run) -> Line:
    request = event.workflow_execution_update_accepted_event_attributes.accepted_request
    actor = actor_in(request.input.args.payloads)
    text = f"Update {request.input.name} accepted"
    if actor is not None:
        text += f" from {actor.role} {actor.name} ({actor.user_id})"
    return Line(text, actor)


def _update_completed(event: HistoryEvent, run: Run) -> Line | None:
    """A successful update said it all when accepted; a failed one says why here."""
    a = event.workflow_execution_update_completed_event_attributes
    if not a.outcome.HasField("failure"):
        return None
    accepted = run.by_id.get(a.accepted_event_id)
    name = (
        accepted.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        if accepted
        else "?"
    )
    return Line(f"Update {name} failed: {failure_text(a.outcome.failure)}")


def _signaled(event: HistoryEvent, run: Run) -> Line:
    a = event.workflow_execution_signaled_event_attributes
    sender = a.external_workflow_execution.workflow_id
    return Line(f"signal {a.signal_name} received" + (f" from {sender}" if sender else ""))


def _signal_sent(event: HistoryEvent, run: Run) -> Line:
    a = event.signal_external_workflow_execution_initiated_event_attributes
    return Line(f"signal {a.signal_name} sent to {a.workflow_execution.workflow_id}")


def _signal_failed(event: HistoryEvent, run: Run) -> Line:
    a = event.signal_external_workflow_execution_failed_event_attributes
    return Line(f"signal to {a.workflow_execution.workflow_id} not delivered: it has ended")


def _cancel_sent(event: HistoryEvent, run: Run) -> Line:
    a = event.request_cancel_external_workflow_execution_initiated_event_attributes
    return Line(f"cancellation of {a.workflow_execution.workflow_id} requested")


# --- children --------------------------------------------------------------------------------


def _child(verb: str, attrs: str) -> Translation:
    def line(event: HistoryEvent, run: Run) -> Line:
        a = getattr(event, attrs)
        return Line(f"child workflow {a.workflow_execution.workflow_id} {verb}")

    return line


def _child_started(event: HistoryEvent, run: Run) -> Line:
    a = event.child_workflow_execution_started_event_attributes
    wid = a.workflow_execution.workflow_id
    return Line(f"child workflow {a.workflow_type.name} started: {wid}")


def _child_failed(event: HistoryEvent, run: Run) -> Line:
    a = event.child_workflow_execution_failed_event_attributes
    wid = a.workflow_execution.workflow_id
    return Line(f"child workflow {wid} failed: {failure_text(a.failure)}")


def _child_not_started(event: HistoryEvent, run: Run) -> Line:
    a = event.start_child_workflow_execution_failed_event_attributes
    return Line(f"child workflow {a.workflow_id} could not start: it already exists")


TRANSLATIONS: dict[int, Translation | None] = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: _wf_started,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: _closed("completed"),
    E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: _wf_failed,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: _closed("timed out"),
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: _closed("cancelled"),
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: _wf_terminated,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: _wf_continued,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED: _wf_cancel_requested,
    E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: None,
    E.EVENT_TYPE_WORKFLOW_TASK_STARTED: None,
    E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: None,
    E.EVENT_TYPE_WORKFLOW_TASK_FAILED: _wf_task_failed,
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: None,
    E.EVENT_TYPE_ACTIVITY_TASK_STARTED: None,
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: _activity_completed,
    E.EVENT_TYPE_ACTIVITY_TASK_FAILED: _activity_failed,
    E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: _activity_timed_out,
    E.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: None,
    E.EVENT_TYPE_ACTIVITY_TASK_CANCELED: _activity_canceled,
    E.EVENT_TYPE_TIMER_STARTED: _timer_started,
    E.EVENT_TYPE_TIMER_FIRED: _timer_fired,
    E.EVENT_TYPE_TIMER_CANCELED: None,
    E.EVENT_TYPE_MARKER_RECORDED: _marker,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED: None,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: _update_accepted,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED: _update_completed,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: _signaled,
    E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: _signal_sent,
    E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED: _signal_failed,
    E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED: None,
    E.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: _cancel_sent,
    E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED: None,
    E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: None,
    E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED: _child_not_started,
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED: _child_started,
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: _child(
        "completed", "child_workflow_execution_completed_event_attributes"
    ),
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: _child_failed,
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: _child(
        "cancelled", "child_workflow_execution_canceled_event_attributes"
    ),
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: _child(
        "timed out", "child_workflow_execution_timed_out_event_attributes"
    ),
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: _child(
        "terminated", "child_workflow_execution_terminated_event_attributes"
    ),
    # The Stage search attribute follows the stage changes the audit trail already shows.
    E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: None,
}
