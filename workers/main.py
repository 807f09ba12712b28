"""The one worker: every workflow and activity of grantflow on one task queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import structlog
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Interceptor, Worker

from activities.agreement import AgreementActivities
from activities.application import ApplicationActivities
from activities.council import CouncilActivities
from activities.pilot import PilotActivities
from activities.programme import ProgrammeActivities
from activities.review import ReviewActivities
from grantflow.notify import LogSender, Sender
from workers.sandbox import sandbox_runner
from workflows.agreement import AgreementWorkflow
from workflows.application import ApplicationWorkflow
from workflows.council import CouncilSessionWorkflow
from workflows.pilot import PilotWorkflow
from workflows.programme import ProgrammeWorkflow
from workflows.review import ReviewWorkflow
from workflows.site import PilotSiteWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS = [
    ApplicationWorkflow,
    ProgrammeWorkflow,
    ReviewWorkflow,
    CouncilSessionWorkflow,
    AgreementWorkflow,
    PilotWorkflow,
    PilotSiteWorkflow,
]


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    *,
    sender: Sender | None = None,
    max_cached_workflows: int = 1000,
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """A worker for every workflow and activity; SIGTERM handling is the caller's.
    `interceptors` are for tests (tests/test_fault_commit.py injects faults with one).

    Its `shutdown()` drains it: it tells the server (ShutdownWorker) that its sticky queue is
    gone, so the next tasks of the workflows it cached go to the shared queue where its
    successor polls; it finishes the workflow tasks it holds, with their local activities;
    `graceful_shutdown_timeout` gives its activities (short database writes) time to finish
    before they are cancelled. One race is the server's to close: a task handed to a poll the
    stopping worker is cancelling is lost until its timeout, unless the server completes
    those polls itself (see `drains_on_shutdown`). Workflows run in the SDK's sandbox, made
    cheaper to start by workers/sandbox.py."""
    apps, progs = ApplicationActivities(pool), ProgrammeActivities(pool)
    revs = ReviewActivities(pool, sender or LogSender())
    council = CouncilActivities(pool)
    agreements = AgreementActivities(pool, sender or LogSender())
    pilots = PilotActivities(pool, sender or LogSender())
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=sandbox_runner(WORKFLOWS),
        activities=[
            apps.register_application,
            apps.record_stage_change,
            progs.register_programme,
            progs.record_intake_change,
            progs.record_correction,
            revs.offer_task,
            revs.record_change,
            council.open_session,
            council.record_vote,
            council.reserve,
            council.release,
            council.record_decision,
            council.close_session,
            agreements.record_agreement,
            agreements.disburse,
            agreements.release_unspent,
            agreements.find_report_reviewer,
            pilots.record_site,
            pilots.record_pilot,
            pilots.find_evaluator,
        ],
        graceful_shutdown_timeout=timedelta(seconds=10),
        max_cached_workflows=max_cached_workflows,
        interceptors=interceptors,  # tests only (a fault injected on purpose); never set here
    )


async def drains_on_shutdown(client: Client) -> bool:
    """Whether the server completes a stopping worker's open polls (empty) when the worker
    says it stops, rather than leaving the worker to cancel them: a cancel can cross a task on
    its way, which then waits out its timeout (10 s for a workflow task) before another worker
    gets it. Only then does a SIGTERM hand every task back. The server's dynamic config
    `frontend.enableCancelWorkerPollsOnShutdown` turns it on (off by default in Temporal 1.31;
    the embedded server has it, grantflow.dev.embedded.TEMPORAL_SERVER_ARGS)."""
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    return described.namespace_info.capabilities.worker_poll_complete_on_shutdown


async def warn_unless_drains(client: Client) -> None:
    """Say at start, once, when a SIGTERM would not drain this worker cleanly."""
    try:
        drains = await drains_on_shutdown(client)
    except RPCError as exc:  # not allowed to describe the namespace: nothing to tell
        log.info("cannot tell whether the server drains a stopping worker", error=exc.message)
        return
    if not drains:
        log.warning(
            "the Temporal server does not complete a stopping worker's polls: after a SIGTERM"
            " a workflow task may wait out its timeout",
            setting="frontend.enableCancelWorkerPollsOnShutdown",
        )
