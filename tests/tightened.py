"""Replay every committed history with every limit of every HTTP body tightened to the extreme:
each text, list or map at most 1 long, each number at most 0 (any value they held fails).

A workflow reads its inputs, update arguments and activity results back from its history on
every replay; if one of them were an HTTP body, tightening an API limit would stop running
workflows. Run by tests/test_replay.py in a process of its own (`python -m tests.tightened`):
tightening rebuilds the models, which must not leak into other tests. Prints what failed and
exits 1; exits 2 when nothing was tightened (the test could not fail)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pkgutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import annotated_types as at
from pydantic import BaseModel

import schemas
from schemas.common import Input

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def _models() -> list[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for info in pkgutil.iter_modules(schemas.__path__):
        module = importlib.import_module(f"schemas.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                found.add(obj)
    return sorted(found, key=lambda m: (m.__module__, m.__qualname__))


def _tighter(limit: object) -> object:
    if isinstance(limit, at.MaxLen):
        return at.MaxLen(1)
    if isinstance(limit, at.Le) and isinstance(limit.le, int | float):
        return at.Le(0)
    if isinstance(limit, at.Lt) and isinstance(limit.lt, int | float):
        return at.Lt(0)
    return limit


def tighten_every_body() -> list[str]:
    """Tighten the limits of every HTTP body (`schemas.common.Input`), then rebuild every
    model so that those embedding a body see its new limits; returns the fields tightened."""
    models = _models()
    tightened = []
    for model in models:
        if not issubclass(model, Input):
            continue
        for name, field in model.model_fields.items():
            limits = [_tighter(m) for m in field.metadata]
            if limits != field.metadata:
                field.metadata[:] = limits
                tightened.append(f"{model.__name__}.{name}")
    for _ in range(6):  # a model embeds bodies at most a few levels deep
        for model in models:
            model.model_rebuild(force=True)
    return tightened


async def replay_every_history() -> list[str]:
    """The histories that no longer replay, with why: one Replayer for them all, which keeps
    one worker (one per history takes twice as long)."""
    from temporalio.client import WorkflowHistory
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workers.main import WORKFLOWS
    from workers.sandbox import sandbox_runner

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(WORKFLOWS),
    )

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for path in HISTORIES:
            yield WorkflowHistory.from_json(path.name, path.read_text())

    failures = []
    async with replayer.workflow_replay_iterator(histories()) as results:
        async for result in results:
            if result.replay_failure is not None:
                failures.append(f"{result.history.workflow_id}: {result.replay_failure}")
    return failures


def main() -> int:
    tightened = tighten_every_body()
    if not tightened or not HISTORIES:
        print("nothing tightened or no history: this check could not fail")
        return 2
    failures = asyncio.run(replay_every_history())
    print(f"{len(tightened)} limits tightened, {len(HISTORIES)} histories replayed")
    print("\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip the interpreter's finalization: the SDK's Rust runtime threads may still hold the
    # GIL's thread state then, and CPython aborts ("PyGILState_Release: thread state must be
    # current", exit -6) after the answer above was already decided and printed.
    os._exit(code)
