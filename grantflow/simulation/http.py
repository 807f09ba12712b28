"""The simulator's HTTP side: people with tokens, and one client that times every request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRIES = 5


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    token: str
    institution_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class SimulationError(RuntimeError):
    """The system answered what no user of it should ever see."""


@dataclass
class Api:
    """Every request of the simulation goes through here, each one timed. A gate bounds the
    pages people look at in flight; what they do (submit, revise, vote...) is not queued
    behind anyone else, since a queue in the simulator would make a deadline depend on how
    busy everyone else is."""

    client: httpx.AsyncClient
    concurrency: int = 16
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._looks = asyncio.Semaphore(self.concurrency)
        self._acts = asyncio.Semaphore(1_000)

    async def call(
        self,
        method: str,
        url: str,
        who: Person,
        body: Any = None,
        *,
        wait: float = 60,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request; connection errors, 503 (a server busy or restarting) and 429 (a
        workflow's full queue of updates) are retried; any other 5xx is a bug and stops the
        simulation."""
        for attempt in range(RETRIES):
            async with self._looks if method == "GET" else self._acts:
                started = time.perf_counter()
                try:
                    response = await self.client.request(
                        method, url, json=body, headers=who.headers | (headers or {}), timeout=wait
                    )
                except httpx.TransportError:
                    if attempt == RETRIES - 1:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                self.latencies.append(time.perf_counter() - started)
            busy = response.status_code in (429, 503)
            if busy and attempt < RETRIES - 1:
                after = float(response.headers.get("Retry-After", 0.5 * (attempt + 1)))
                await asyncio.sleep(after)
                continue
            if response.status_code >= 500:
                raise SimulationError(f"{method} {url} → {response.status_code}: {response.text}")
            return response
        raise AssertionError("unreachable")

    async def ok(
        self,
        method: str,
        url: str,
        who: Person,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A request that must succeed; its JSON."""
        response = await self.call(method, url, who, body, headers=headers)
        if response.status_code >= 300:
            raise SimulationError(f"{method} {url} → {response.status_code}: {response.text}")
        return response.json()

    def percentile_ms(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)
