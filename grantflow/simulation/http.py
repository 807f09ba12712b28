"""The simulator's HTTP side: people with tokens, and one client that times every request."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRIES = 5  # connection errors
# A 503 or 429 is retried for this long, backing off to BACKOFF_CAP seconds: a worker starved of
# CPU on a loaded machine fails its workflow tasks for a while (503, "retrying a failed step"),
# and a person would come back until it answers, not give up after five tries in seconds.
BUSY_PATIENCE = 300.0
BACKOFF_CAP = 5.0

# Which kind of request a path is, so that the slow kind is named, not just the slowest request.
# First match wins; GETs are all "read".
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("submit", re.compile(r"^/v1/applications$")),
    ("revise or withdraw", re.compile(r"^/v1/applications/[^/]+/(revision|withdrawal)$")),
    ("review action", re.compile(r"^/v1/reviews/")),
    ("vote", re.compile(r"^/v1/council-sessions/[^/]+/votes$")),
    ("council session", re.compile(r"/council-sessions")),
    ("admin action", re.compile(r"^/v1/admin/")),
    ("agreement, pilot, report", re.compile(r"/(agreement|pilot|sites|reports)")),
)


def kind_of(method: str, url: str) -> str:
    """The kind of request a simulated person made: read, submit, review action, vote..."""
    if method == "GET":
        return "read"
    path = url.split("?", 1)[0]
    return next((kind for kind, pattern in KINDS if pattern.search(path)), "set-up")


def percentile_ms(latencies: list[float], share: float) -> float:
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    token: str
    institution_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# 503s after which the server keeps the action (grantflow/services/updates.py): a retry may
# find it taken.
KEPT_BY_SERVER = ("no worker is processing", "the action was taken but not answered")
KEPT = "grantflow.simulation.kept"


def taken_meanwhile(response: httpx.Response) -> bool:
    """Whether this refusal (409, or 404 for a workflow that has ended) answers a retry of an
    action the server had kept after telling it no worker took it up (503): the first attempt
    took effect meanwhile, as it does for a person who retries."""
    return bool(response.extensions.get(KEPT))


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
    by_kind: dict[str, list[float]] = field(default_factory=dict)

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
        workflow's full queue of updates) are retried, the busy answers for `BUSY_PATIENCE`
        seconds; any other 5xx is a bug and stops the simulation."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + BUSY_PATIENCE
        attempt = failures = 0
        kept = False
        while True:
            attempt += 1
            async with self._looks if method == "GET" else self._acts:
                started = time.perf_counter()
                try:
                    response = await self.client.request(
                        method, url, json=body, headers=who.headers | (headers or {}), timeout=wait
                    )
                except httpx.TransportError:
                    failures += 1
                    if failures == RETRIES:
                        raise
                    await asyncio.sleep(0.5 * failures)
                    continue
                took = time.perf_counter() - started
                self.latencies.append(took)
                self.by_kind.setdefault(kind_of(method, url), []).append(took)
            busy = response.status_code in (429, 503)
            kept = kept or (
                response.status_code == 503 and any(m in response.text for m in KEPT_BY_SERVER)
            )
            if busy and loop.time() < give_up:
                backoff = min(BACKOFF_CAP, 0.5 * attempt)
                await asyncio.sleep(float(response.headers.get("Retry-After", backoff)))
                continue
            if response.status_code >= 500:
                raise SimulationError(f"{method} {url} → {response.status_code}: {response.text}")
            if kept and response.status_code in (404, 409):
                response.extensions[KEPT] = True
            return response

    async def ok(
        self,
        method: str,
        url: str,
        who: Person,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A request that must succeed; its JSON (None when a retry found the action taken
        meanwhile: read what it changed)."""
        response = await self.call(method, url, who, body, headers=headers)
        if taken_meanwhile(response):
            return None
        if response.status_code >= 300:
            raise SimulationError(f"{method} {url} → {response.status_code}: {response.text}")
        return response.json()

    def percentile_ms(self, share: float) -> float:
        return percentile_ms(self.latencies, share)

    def by_kind_ms(self) -> dict[str, dict[str, float]]:
        """Requests, p50 and p99 per kind of request, slowest p99 first."""
        rows = {
            kind: {
                "requests": len(times),
                "p50_ms": percentile_ms(times, 0.50),
                "p99_ms": percentile_ms(times, 0.99),
            }
            for kind, times in self.by_kind.items()
        }
        return dict(sorted(rows.items(), key=lambda row: -row[1]["p99_ms"]))
