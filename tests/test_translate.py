"""Local activity markers in plain words, on the histories the suite recorded (tests/histories/)
and on their markers as a failed, backed-off or cancelled local activity records them (the
end-to-end history tests cannot make a database write fail for good: writes retry forever)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from grantflow.services.translate import Line, Run, local_activity_data, translate

pytestmark = pytest.mark.unit

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
MARKER = EventType.EVENT_TYPE_MARKER_RECORDED


def run_of(path: Path) -> Run:
    events = list(WorkflowHistory.from_json(path.stem, path.read_text()).events)
    started = events[0].workflow_execution_started_event_attributes
    return Run(path.stem, "run", started.workflow_type.name, events)


def recorded_local_writes() -> Run:
    """A recorded Application run whose database writes are local activities."""
    for path in HISTORIES:
        if path.name.startswith("Application-") and "core_local_activity" in path.read_text():
            return run_of(path)
    raise AssertionError("no recorded history has a local activity")


@pytest.mark.slow
def test_every_recorded_marker_reads_as_an_activity_or_is_left_out() -> None:
    seen = failed = 0
    for path in HISTORIES:
        run = run_of(path)
        for event in run.events:
            if event.event_type != MARKER:
                continue
            line = translate(event, run)
            data = local_activity_data(event)
            if data is None:  # the SDK's patch markers: bookkeeping
                assert line is None, (path.name, event.event_id, line)
                continue
            seen += 1
            assert line is not None
            failure = event.marker_recorded_event_attributes.HasField("failure")
            if not failure:
                assert line.text == f"activity {data['activity_type']} completed"
                continue
            # A write PostgreSQL refused (tests/test_poison_write.py records some): the line
            # says so, with the database's reason.
            failed += 1
            assert line.text.startswith(f"activity {data['activity_type']} failed after")
            assert "PostgreSQL refused the write" in line.text
    assert seen > failed > 0


def with_data(run: Run, event: HistoryEvent, **changes: object) -> HistoryEvent:
    """A copy of a recorded local activity marker with other LocalActivityMarkerData values,
    added to the run."""
    copy = HistoryEvent()
    copy.CopyFrom(event)
    payload = copy.marker_recorded_event_attributes.details["data"].payloads[0]
    payload.data = json.dumps({**json.loads(payload.data), **changes}).encode()
    copy.event_id = run.events[-1].event_id + 1
    run.events.append(copy)
    run.by_id[copy.event_id] = copy
    return copy


def test_a_retried_failed_backed_off_or_cancelled_local_activity() -> None:
    run = recorded_local_writes()
    [marker] = [e for e in run.events if local_activity_data(e)][:1]
    name = (local_activity_data(marker) or {})["activity_type"]

    retried = with_data(run, marker, attempt=3)
    assert translate(retried, run) == Line(
        f"activity {name} retried 2 times (a local activity's failed attempts are not "
        "recorded); then completed"
    )

    failed = with_data(run, marker, attempt=2)
    failed.marker_recorded_event_attributes.failure.message = "duplicate key value"
    failed.marker_recorded_event_attributes.failure.application_failure_info.type = "UniqueError"
    line = translate(failed, run)
    assert line is not None
    assert line.text == f"activity {name} failed after 2 attempt(s): duplicate key value"

    # Past the local retry threshold the SDK backs off with a timer: that attempt's failure is
    # recorded, and the attempt after it, completed, says why it was retried.
    backed_off = with_data(run, marker, attempt=4, backoff={"seconds": 60, "nanos": 0})
    backed_off.marker_recorded_event_attributes.failure.message = "connection reset"
    line = translate(backed_off, run)
    assert line is not None
    assert line.text == f"activity {name} failed on attempt 4: connection reset; retrying in 60 s"
    then = with_data(run, marker, attempt=5)
    line = translate(then, run)
    assert line is not None
    assert line.text == f"activity {name} retried 4 times: connection reset; then completed"

    cancelled = with_data(run, marker)
    cancelled.marker_recorded_event_attributes.failure.canceled_failure_info.SetInParent()
    line = translate(cancelled, run)
    assert line is not None and line.text == f"activity {name} cancelled"
