"""Refused bearer tokens, counted per client address in this API process's memory.

Every token presented costs a database lookup, so a client trying tokens (or polling with an
expired one) is slowed down here, before the lookup: after `limit` refusals within `window`
seconds, its address gets 429 with Retry-After until that window ends. One entry per address
refused lately, at most `max_addresses` of them; nothing is shared between API processes (each
counts its own), which is enough to make guessing cost time rather than queries.

The address is the one the ASGI server reports: behind a reverse proxy, run uvicorn with
`--proxy-headers` (and `--forwarded-allow-ips`) so that it is the client's, not the proxy's."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    refusals: int


class RefusalThrottle:
    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_addresses, self._clock = (
            limit,
            window,
            max_addresses,
            clock,
        )
        # Insertion order is window start order: the oldest windows are at the front.
        self._windows: dict[str, _Window] = {}

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may present a token again, or None if it may now."""
        found = self._windows.get(address)
        if found is None or found.refusals < self.limit:
            return None
        left = found.started + self.window - self._clock()
        return math.ceil(left) if left > 0 else None

    def refused(self, address: str) -> None:
        """Count one refused token from `address`."""
        now = self._clock()
        found = self._windows.get(address)
        if found is None or now - found.started >= self.window:
            self._windows.pop(address, None)
            self._forget_old(now)
            found = self._windows[address] = _Window(now, 0)
        found.refusals += 1

    def _forget_old(self, now: float) -> None:
        windows = self._windows
        while windows:
            oldest = next(iter(windows))
            ended = now - windows[oldest].started >= self.window
            if not ended and len(windows) < self.max_addresses:
                return
            del windows[oldest]  # over: or the table is full, and this one is the oldest
