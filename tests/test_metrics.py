"""What an operator's Prometheus sees after one application's whole lifecycle: the API's
requests by route template and status, the domain's gauges, the worker's Temporal SDK metrics
on a port of its own; and a dashboard that draws only series these serve."""

from __future__ import annotations

import json
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench import drive
from bench.harness import Grantflow, RoundTrips
from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.dev.embedded import EmbeddedPostgres, free_port
from grantflow.observability.worker import sdk_runtime
from grantflow.services.context import Resources
from grantflow.settings import Settings
from grantflow.temporal import connect
from tests.conftest import fresh_database
from workers.main import build_worker

pytestmark = pytest.mark.slow  # one whole lifecycle, about 20 s
DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "grantflow.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scraped:
    api: Samples
    worker: Samples
    programme_id: str
    app_id: str


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def lifecycle(postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment) -> Any:
    """A stack of the test's own (so its counts are the test's alone) whose worker's client
    serves the SDK's metrics, after one lifecycle from submission to close."""
    port = free_port()
    url = await fresh_database(postgres.url, f"metrics_{uuid.uuid4().hex[:8]}")
    settings = Settings(
        task_queue=f"tq-metrics-{uuid.uuid4()}",
        database_url=url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        worker_metrics_port=port,
        metrics_cache_seconds=0,
    )
    client = await connect(settings.temporal_address or "", runtime=sdk_runtime(settings))
    pool = await create_pool(url, min_size=1, max_size=10)
    worker_pool = await create_pool(url, min_size=1, max_size=10)
    app = create_app(settings, Resources(settings, pool, client))
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            build_worker(client, worker_pool, settings.task_queue),
            httpx.AsyncClient(transport=transport, base_url="http://grantflow.test") as api,
        ):
            gf = Grantflow(None, settings, api, pool, RoundTrips())  # type: ignore[arg-type]
            cohort = await drive.cohort(gf, 1, reviewers=4)
            await drive.lifecycles(cohort, concurrency=1)
            yield await scrape(api, client, port, cohort)
    finally:
        await pool.close()
        await worker_pool.close()


async def scrape(api: httpx.AsyncClient, client: Client, port: int, c: drive.Cohort) -> Scraped:
    served = await api.get("/metrics")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/plain")
    async with httpx.AsyncClient() as http:
        worker = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert worker.status_code == 200
    return Scraped(parse(served.text), parse(worker.text), c.programme_id, c.app_ids[0])


async def test_the_api_counts_each_request_under_its_route_template(lifecycle: Scraped) -> None:
    api = lifecycle.api
    requests = "grantflow_http_requests_total"
    assert value(api, requests, method="POST", route="/v1/applications", status="201") == 1
    reviews = value(api, requests, method="POST", route="/v1/reviews/{task_id}/review")
    assert reviews == 3  # the three experts' reviews
    timed = "grantflow_http_request_duration_seconds_count"
    assert value(api, timed, route="/v1/reviews/{task_id}/review") == 3
    assert value(api, "grantflow_http_request_duration_seconds_sum", route="/v1/applications") > 0
    routes = {dict(ls).get("route", "") for (n, ls) in api if n == requests}
    # Templates only: no series per application, task or session.
    assert not [r for r in routes if re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", r)], routes
    assert value(api, requests) == value(api, timed)


async def test_the_gauges_show_where_the_programme_stands(lifecycle: Scraped) -> None:
    api, programme = lifecycle.api, lifecycle.programme_id
    assert value(api, "grantflow_applications", programme=programme, stage="closed") == 1
    assert value(api, "grantflow_applications", programme=programme) == 1
    for name in ("reviews_overdue", "reports_overdue", "applications_flagged"):
        assert value(api, f"grantflow_{name}", programme=programme) == 0, name
    remaining = value(api, "grantflow_budget_remaining_rub", programme=programme)
    # Approved for the 30 M it asked, all paid out in its two tranches.
    assert remaining == 2_540_000_000 - 30_000_000
    info = [ls for (n, ls) in api if n == "grantflow_programme_info"]
    assert any(dict(ls)["programme"] == programme for ls in info)


async def test_the_worker_serves_the_sdks_metrics(lifecycle: Scraped) -> None:
    worker = lifecycle.worker
    completed = "temporal_workflow_completed_total"
    # One of each workflow the lifecycle ran, each to its end.
    for workflow in ("Application", "Review", "CouncilSession", "Agreement", "Pilot"):
        assert value(worker, completed, workflow_type=workflow) == 1, workflow
    assert value(worker, "temporal_workflow_task_execution_latency_count") > 10
    for histogram in (
        "temporal_workflow_task_schedule_to_start_latency_count",
        "temporal_activity_schedule_to_start_latency_count",
        "temporal_activity_execution_latency_count",
        "temporal_local_activity_execution_latency_count",
    ):
        assert value(worker, histogram) > 0, histogram
    assert value(worker, "temporal_sticky_cache_hit_total") > 0


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]


async def test_the_dashboard_draws_only_series_that_are_served(lifecycle: Scraped) -> None:
    served = {name for (name, _) in lifecycle.api} | {name for (name, _) in lifecycle.worker}
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    for expr in exprs:
        # Every series grantflow and the SDK serve is prefixed; labels and PromQL are not.
        names = set(re.findall(r"\b(?:grantflow|temporal)_[a-z0-9_]+", expr))
        assert names, expr
        missing = names - served
        assert not missing, f"{expr}: {missing} not served"


def test_a_worker_whose_metrics_port_is_taken_says_which_setting_to_change() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(RuntimeError) as refused:
            sdk_runtime(Settings(worker_metrics_port=port))
    finally:
        taken.close()
    message = str(refused.value)
    assert f"127.0.0.1:{port}" in message and "GRANTFLOW_WORKER_METRICS_PORT" in message
    assert "\n" not in message
