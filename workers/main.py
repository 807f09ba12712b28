"""The one worker: every workflow and activity of grantflow on one task queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg
from temporalio.client import Client
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

    `graceful_shutdown_timeout` lets in-flight activities finish (they are short database
    writes) before the worker hands its tasks back to the server. Workflows run in the SDK's
    sandbox, made cheaper to start by workers/sandbox.py."""
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
