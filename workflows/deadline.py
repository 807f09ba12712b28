"""Waiting for deadlines, in one place (after samples-python's updatable_timer).

`Deadline` is one moment someone must act by, which an admin may move (the revision window,
the agreement's acceptance); `sleep_until` is the scheduler's wait for the next of many
moments (review tasks, reports and tranches, a site's reminder and escalation).

Each wait is one `workflow.wait_condition` with a timeout: one timer, cancelled when the
condition comes true first. Recorded histories hold exactly those commands, so a change to a
wait's shape here (another timer, a wait skipped) goes behind `workflow.patched`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

from workflows.options import MIN_WAIT


class Deadline:
    """A moment that can be moved while something waits for it."""

    def __init__(self, at: datetime, *, summary: str | None = None) -> None:
        self.at = at
        self._summary = summary

    def move(self, at: datetime) -> None:
        """Set a new moment (an admin's extension): a wait in progress starts over with it."""
        self.at = at

    async def wait(self, done: Callable[[], bool]) -> bool:
        """Until `done()` (True) or until the moment passes first (False)."""
        while True:
            at = self.at
            if not await sleep_until(at, self._done_or_moved(done, at), summary=self._summary):
                return False
            if done():
                return True

    def _done_or_moved(self, done: Callable[[], bool], at: datetime) -> Callable[[], bool]:
        return lambda: done() or self.at != at


async def sleep_until(
    wake: datetime | None, woken: Callable[[], bool], *, summary: str | None = None
) -> bool:
    """Until `woken()` (True) or until `wake` (False); without `wake`, until `woken()`.
    A moment already past still gets a timer (MIN_WAIT): the same commands whenever it runs."""
    try:
        await workflow.wait_condition(
            woken,
            timeout=None if wake is None else max(wake - workflow.now(), MIN_WAIT),
            timeout_summary=summary,
        )
    except TimeoutError:
        return False
    return True
