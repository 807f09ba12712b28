"""The domain's gauges, read from PostgreSQL when Prometheus scrapes, at most once per
`metrics_cache_seconds`: several scrapers (or API replicas behind one) cost one reading.

A reading that fails (PostgreSQL down) keeps the last one served, counts the failure and
ages: `grantflow_domain_gauges_age_seconds` tells a stale dashboard from a quiet one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from grantflow.store import gauges

log = structlog.get_logger(__name__)
TIMEOUT = 5.0  # seconds: a scrape must answer even when PostgreSQL does not


class DomainGauges(Collector):
    """A collector whose values `refresh` reads; `collect` (synchronous, as prometheus_client
    calls it) only formats the last reading."""

    def __init__(self, registry: CollectorRegistry, max_age: float) -> None:
        self.max_age = max_age
        self.reading: gauges.Gauges | None = None
        self.read_at = 0.0
        self._lock = asyncio.Lock()
        self.failures = Counter(
            "grantflow_domain_gauges_failures",
            "Readings of the domain gauges from PostgreSQL that failed (the last one is kept).",
            registry=registry,
        )
        registry.register(self)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """Read the gauges again unless the last reading is recent enough."""
        async with self._lock:  # concurrent scrapes wait for one reading
            if self.reading is not None and time.monotonic() - self.read_at < self.max_age:
                return
            try:
                async with asyncio.timeout(TIMEOUT), pool.acquire() as conn:
                    self.reading = await gauges.read(conn)
                self.read_at = time.monotonic()
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                self.failures.inc()
                log.warning("domain gauges not read", error=f"{type(exc).__name__}: {exc}")

    def collect(self) -> Iterator[Metric]:
        if self.reading is None:
            return
        yield from _families(self.reading)
        age = GaugeMetricFamily(
            "grantflow_domain_gauges_age_seconds", "How old the domain gauges' reading is."
        )
        age.add_metric([], time.monotonic() - self.read_at)
        yield age


PER_PROGRAMME = (
    ("grantflow_reviews_overdue", "Review tasks offered or accepted, past their deadline."),
    ("grantflow_reports_overdue", "Reports due or returned, past their due date."),
    ("grantflow_applications_flagged", "Applications flagged for an admin's attention."),
    ("grantflow_budget_remaining_rub", "A programme's budget not reserved by approvals, roubles."),
)


def _families(g: gauges.Gauges) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "grantflow_programme_info",
        "1 per programme, with its name to label panels by.",
        labels=["programme", "name"],
    )
    for programme, name in g.names.items():
        info.add_metric([programme, name], 1)
    yield info
    stages = GaugeMetricFamily(
        "grantflow_applications",
        "Applications by programme and the stage they are in now.",
        labels=["programme", "stage"],
    )
    for (programme, stage), n in sorted(g.by_stage.items()):
        stages.add_metric([programme, stage], n)
    yield stages
    values = (g.overdue_reviews, g.overdue_reports, g.flagged, g.remaining_rub)
    for (name, documentation), by_programme in zip(PER_PROGRAMME, values, strict=True):
        family = GaugeMetricFamily(name, documentation, labels=["programme"])
        for programme in g.names:  # every programme, zero included: a panel shows it drop
            family.add_metric([programme], by_programme.get(programme, 0))
        yield family
