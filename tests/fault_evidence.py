"""How a fault test knows that its fault hit work, not an idle system: before it strikes, the
database shows a write of the worker's started and not finished; afterwards, the histories show
what the fault cut short (a workflow task that timed out, an activity run again).

A write is made visible while it runs by a trigger of the test's own database: while armed,
every audit event a worker writes (nearly every activity writes one) waits `seconds` inside
its statement, and the connection's `application_name` (seen in pg_stat_activity) names the
workflow the write is for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from temporalio.api.enums.v1 import EventType, TaskQueueKind, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from grantflow.services.translate import local_activity_data

SLOW_WRITES_SQL = """
CREATE TABLE fault_latency (seconds float8 NOT NULL);
INSERT INTO fault_latency VALUES (0);
CREATE FUNCTION fault_slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pause float8 := (SELECT seconds FROM fault_latency);
    name text := split_part(current_setting('application_name'), ' ', 1);
BEGIN
    IF pause > 0 AND name LIKE 'worker-%' THEN
        -- Local to the transaction: the name is the worker's again once the write ends.
        PERFORM set_config('application_name', left(name || ' ' || NEW.workflow_id, 63), true);
        PERFORM pg_sleep(pause);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fault_slow_write BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION fault_slow_write();
"""
# Writes started less than $2 s ago: a fault dealt now finds them still running.
IN_FLIGHT_SQL = """
SELECT split_part(application_name, ' ', 2) FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active'
  AND application_name LIKE $1 || ' %'
  AND clock_timestamp() - query_start < $2 * interval '1 second'"""


async def install_slow_writes(pool: asyncpg.Pool) -> None:
    await pool.execute(SLOW_WRITES_SQL)


async def slow_writes(pool: asyncpg.Pool, seconds: float) -> None:
    """Arm (or, with 0, disarm) the trigger."""
    await pool.execute("UPDATE fault_latency SET seconds = $1", seconds)


async def writes_in_flight(pool: asyncpg.Pool, worker: str, within: float) -> list[str]:
    """The workflows whose write the worker whose connections are named `worker` started less
    than `within` seconds ago and has not finished (seen only while the trigger is armed)."""
    return [row[0] for row in await pool.fetch(IN_FLIGHT_SQL, worker, within)]


# --- what the histories say ---------------------------------------------------------------------


@dataclass(frozen=True)
class Interrupted:
    """A piece of work a fault cut short, as a history records it: a workflow task that timed
    out or failed (its worker died holding it, or never took it), the attempts of a workflow
    task lost without a trace but their count, an activity that ran again after an attempt
    was lost or failed, or a local activity the worker had to retry. The fault that cut it
    short struck between `scheduled` and `ended`."""

    workflow_id: str
    what: str  # "workflow task", or the activity's type
    kind: str  # "workflow task", "activity" or "local activity"
    cause: str  # START_TO_CLOSE, SCHEDULE_TO_START, LOST (unrecorded), or a failure's message
    queue: str  # normal or sticky, for a workflow task
    identity: str  # the worker that held the workflow task, or ran the last attempt
    scheduled: datetime
    ended: datetime  # when the server gave up on it, or scheduled it again
    attempt: int = 1


@dataclass
class Fault:
    """One fault as the test dealt it: when, to which worker, and what was in flight then."""

    what: str
    at: datetime
    clock: float  # `at` on the event loop's clock, that of the cohort's answers
    identity: str = ""  # the worker killed, if a worker was
    writing: list[str] = field(default_factory=list)  # workflows with a write in flight
    requests: list[str] = field(default_factory=list)  # writes (Updates) users awaited
    hit: list[Interrupted] = field(default_factory=list)  # what the histories show it cut short


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(UTC)


def _timeout(value: TimeoutType.ValueType) -> str:
    return TimeoutType.Name(value).removeprefix("TIMEOUT_TYPE_")


def _queue(scheduled: HistoryEvent) -> str:
    kind = scheduled.workflow_task_scheduled_event_attributes.task_queue.kind
    return TaskQueueKind.Name(kind).removeprefix("TASK_QUEUE_KIND_").lower()


def _task_ended(workflow_id: str, events: dict[int, HistoryEvent], e: HistoryEvent) -> Interrupted:
    """A workflow task that timed out or failed."""
    timed_out = e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
    attrs = e.workflow_task_timed_out_event_attributes
    failed = e.workflow_task_failed_event_attributes
    cause = _timeout(attrs.timeout_type) if timed_out else failed.failure.message
    scheduled = events[(attrs if timed_out else failed).scheduled_event_id]
    started = events.get((attrs if timed_out else failed).started_event_id)
    return Interrupted(
        workflow_id,
        "workflow task",
        "workflow task",
        cause,
        _queue(scheduled),
        started.workflow_task_started_event_attributes.identity if started else "",
        _at(scheduled),
        _at(e),
        scheduled.workflow_task_scheduled_event_attributes.attempt,
    )


def _attempts_lost(workflow_id: str, previous: Interrupted, e: HistoryEvent) -> Interrupted | None:
    """The attempts of a workflow task between a recorded timeout or failure and the next
    task: the server records them only by the next task's attempt number."""
    attempt = e.workflow_task_scheduled_event_attributes.attempt
    if attempt <= previous.attempt + 1:
        return None
    return Interrupted(
        workflow_id, "workflow task", "workflow task", "LOST", _queue(e), "", previous.ended,
        _at(e), attempt - 1,
    )  # fmt: skip


def _activity_retry(
    workflow_id: str, events: dict[int, HistoryEvent], e: HistoryEvent
) -> Interrupted:
    attrs = e.activity_task_started_event_attributes
    scheduled = events[attrs.scheduled_event_id]
    failure = attrs.last_failure
    cause = failure.message
    if failure.HasField("timeout_failure_info"):
        cause = _timeout(failure.timeout_failure_info.timeout_type)
    return Interrupted(
        workflow_id,
        scheduled.activity_task_scheduled_event_attributes.activity_type.name,
        "activity",
        cause,
        "normal",
        attrs.identity,
        _at(scheduled),
        _at(e),
        attrs.attempt,
    )


TASK_ENDED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
}


def interrupted(history: WorkflowHistory) -> list[Interrupted]:
    """What one run's history shows was cut short."""
    events = {e.event_id: e for e in history.events}
    found: list[Interrupted] = []
    last_task_ended: Interrupted | None = None
    for e in history.events:
        if e.event_type in TASK_ENDED:
            last_task_ended = _task_ended(history.workflow_id, events, e)
            found.append(last_task_ended)
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED and last_task_ended:
            if lost := _attempts_lost(history.workflow_id, last_task_ended, e):
                found.append(lost)
            last_task_ended = None
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            if e.activity_task_started_event_attributes.attempt > 1:
                found.append(_activity_retry(history.workflow_id, events, e))
        elif (data := local_activity_data(e)) and int(data.get("attempt") or 1) > 1:
            # Only a local activity's last attempt is recorded, with its number.
            name, attempt = str(data.get("activity_type")), int(data["attempt"])
            found.append(
                Interrupted(
                    history.workflow_id, name, "local activity", "", "", "", _at(e), _at(e),
                    attempt,
                )
            )  # fmt: skip
    return found


async def task_queue_histories(client: Client, task_queue: str) -> list[WorkflowHistory]:
    """Every run's history on the task queue, closed or running."""
    runs = [(e.id, e.run_id) async for e in client.list_workflows(f"TaskQueue = '{task_queue}'")]
    fetching = asyncio.Semaphore(8)

    async def fetch(workflow_id: str, run_id: str | None) -> WorkflowHistory:
        async with fetching:
            return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()

    return list(await asyncio.gather(*(fetch(w, r) for w, r in runs)))


async def interruptions(client: Client, task_queue: str) -> list[Interrupted]:
    return [i for h in await task_queue_histories(client, task_queue) for i in interrupted(h)]


def hit_by(fault: Fault, lost: list[Interrupted]) -> list[Interrupted]:
    """What the histories show this worker kill cut short, of the writes it caught in flight:
    the workflow task the killed worker held (its local activities, its Update handlers), or
    the activity attempt it ran, which the server ran again once the attempt timed out; each
    one under way when the kill struck.

    A workflow task is the killed worker's by the identity its start recorded. The server
    records none for a speculative task (one an Update brought) nor for a retried one whose
    attempts it only counts: such a task is taken for the killed worker's when it was under
    way at the kill, since the test kills a worker only once its predecessor is gone."""
    return [
        i
        for i in lost
        if i.workflow_id in fault.writing
        and i.scheduled < fault.at < i.ended
        and i.cause in ("START_TO_CLOSE", "LOST")
        and (i.kind == "activity" or i.identity in (fault.identity, ""))
    ]


_TASK_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_task_completed_event_attributes",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow_task_failed_event_attributes",
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "workflow_task_timed_out_event_attributes",
}
_ACTIVITY_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


def _under_way(events: list[HistoryEvent]) -> bool:
    """Whether these events (a history up to some moment) leave a workflow task started and
    not ended, or an activity scheduled and not ended."""
    tasks: set[int] = set()
    activities: set[int] = set()
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            tasks.add(e.event_id)
        elif e.event_type in _TASK_CLOSED:
            tasks.discard(getattr(e, _TASK_CLOSED[e.event_type]).started_event_id)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities.add(e.event_id)
        elif e.event_type in _ACTIVITY_CLOSED:
            activities.discard(getattr(e, _ACTIVITY_CLOSED[e.event_type]).scheduled_event_id)
    return bool(tasks or activities)


def update_tasks_lost(fault: Fault, histories: list[WorkflowHistory]) -> list[Interrupted]:
    """The Update handlers the fault cut short, of the workflows it caught writing. The server
    records an Update's workflow task (a speculative one) only once a worker completes it, so
    one cut short leaves no event. What shows it: the database saw the workflow's write in
    flight at the fault while its history had nothing under way then (no workflow task nor
    activity started and not ended), so the write was an Update handler's; and the history
    accepts an Update only after the fault: the handler ran again."""
    found = []
    for history in histories:
        if history.workflow_id not in fault.writing:
            continue
        before = [e for e in history.events if _at(e) <= fault.at]
        if not before or _under_way(before):
            continue
        accepted = next(
            (
                e
                for e in history.events
                if _at(e) > fault.at
                and e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            ),
            None,
        )
        if accepted is None:
            continue
        request = accepted.workflow_execution_update_accepted_event_attributes.accepted_request
        found.append(
            Interrupted(
                history.workflow_id, request.input.name, "update", "LOST", "", "",
                _at(before[-1]), _at(accepted),
            )
        )  # fmt: skip
    return found


def finished_by(history: WorkflowHistory, identity: str, after: datetime) -> list[str]:
    """The workflow tasks and activities the worker `identity` completed after `after`."""
    done = {
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_task_completed_event_attributes",
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    }
    return [
        f"{history.workflow_id} #{e.event_id} {EventType.Name(e.event_type)}"
        for e in history.events
        if e.event_type in done
        and getattr(e, done[e.event_type]).identity == identity
        and e.event_time.ToDatetime(UTC) > after
    ]
