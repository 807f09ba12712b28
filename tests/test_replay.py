"""Every recorded history still replays on today's workflow code.

A change to a workflow that would make running workflows take a different path (without
`workflow.patched`) fails here, in CI, instead of in production. `make histories` records the
paths the suite takes into tests/histories/; commit the new files with the change."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.main import WORKFLOWS
from workers.sandbox import sandbox_runner

pytestmark = pytest.mark.unit

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
TEXTS = {path: path.read_text() for path in HISTORIES}


def test_every_workflow_has_recorded_histories() -> None:
    recorded = {path.name.split("-", 1)[0] for path in HISTORIES}
    assert {wf.__temporal_workflow_definition.name for wf in WORKFLOWS} <= recorded  # type: ignore[attr-defined]


def _handlers_in(event: HistoryEvent) -> str | None:
    """The Update or Signal handler an event of a history ran, if it ran one."""
    if event.HasField("workflow_execution_update_accepted_event_attributes"):
        accepted = event.workflow_execution_update_accepted_event_attributes
        return f"update {accepted.accepted_request.input.name}"
    if event.HasField("workflow_execution_signaled_event_attributes"):
        return f"signal {event.workflow_execution_signaled_event_attributes.signal_name}"
    return None


def test_every_update_and_signal_handler_is_in_a_recorded_history() -> None:
    """A handler no recorded history runs could change what it records without a patch and
    this module would not notice: each one needs a test whose history is committed (`make
    histories`, then commit the new files that contain it)."""
    recorded: set[str] = set()
    for path in HISTORIES:
        workflow_type = path.name.split("-", 1)[0]
        history = WorkflowHistory.from_json(path.stem, TEXTS[path])
        recorded |= {f"{workflow_type} {h}" for e in history.events if (h := _handlers_in(e))}
    handlers = set()
    for wf in WORKFLOWS:
        defn = wf.__temporal_workflow_definition  # type: ignore[attr-defined]
        handlers |= {f"{defn.name} update {name}" for name in defn.updates if name}
        handlers |= {f"{defn.name} signal {name}" for name in defn.signals if name}
    assert not handlers - recorded, f"handlers in no committed history: {handlers - recorded}"


async def _replay_all() -> dict[str, BaseException | None]:
    """Every recorded history replayed by one Replayer, which keeps one worker for them all
    (one per history costs twice the time): each history's failure, or None, by file name."""
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(WORKFLOWS),  # the worker's sandbox
    )

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for path in HISTORIES:
            yield WorkflowHistory.from_json(path.name, TEXTS[path])

    failures: dict[str, BaseException | None] = {}
    async with replayer.workflow_replay_iterator(histories()) as results:
        async for result in results:
            failures[result.history.workflow_id] = result.replay_failure
    return failures


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replayed() -> dict[str, BaseException | None]:
    return await _replay_all()


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
@pytest.mark.slow
def test_a_recorded_history_replays_on_the_current_code(
    path: Path, replayed: dict[str, BaseException | None]
) -> None:
    assert path.name in replayed, f"{path.name} was not replayed"
    assert replayed[path.name] is None, f"{path.name}: {replayed[path.name]}"


@pytest.mark.slow  # a process of its own that replays every history: 10 s and more
def test_every_history_still_replays_with_every_api_limit_tightened() -> None:
    """Workflow payloads have lenient models of their own (the HTTP bodies subclass them and
    add their limits): with every limit of every body tightened until no value passes, every
    recorded history still replays. In a process of its own (tests/tightened.py), since the
    tightening rebuilds the models."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.tightened"],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-5_000:]
    assert "limits tightened" in done.stdout
