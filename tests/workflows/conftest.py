"""The workflow tier: grantflow's real workflows on the time-skipping test server, with fake
activities (tests/workflows/fakes.py) and no PostgreSQL, as samples-python and sdk-python test
theirs. Deadlines of days pass in milliseconds: time jumps while a test sleeps (`env.sleep`)
or waits on a workflow's result, and stands still otherwise.

One server for the session; each test has its own task queue, worker and fakes, and the
histories of the workflows it ran are replayed on today's code when it ends."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from grantflow.dev.embedded import find_binary
from schemas.application import ApplicationContent, ApplicationStart
from schemas.common import Actor, OrganisationType, Role
from schemas.programme import ProgrammeCreate, ProgrammeStart
from tests.support import application_body, programme_body
from tests.workflows.fakes import FakeActivities
from workers.main import WORKFLOWS
from workers.sandbox import sandbox_runner
from workflows.application import PROGRAMME, STAGE


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    # The test server refuses a search attribute it was not told of, as a real cluster does.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in (STAGE, PROGRAMME)
            },
        )
    )
    yield env
    await env.shutdown()


@dataclass
class World:
    """One test's worker (every workflow of grantflow, fake activities) and its people."""

    env: WorkflowEnvironment
    fakes: FakeActivities
    task_queue: str = field(default_factory=lambda: f"tq-{uuid.uuid4()}")
    applicant: Actor = field(default_factory=lambda: person(Role.applicant, "Clinic 1"))
    admin: Actor = field(default_factory=lambda: person(Role.admin))

    @property
    def client(self) -> Client:
        return self.env.client

    def expert(self, name: str, institution: str) -> Actor:
        """An expert the fake matching offers tasks to, in the order they were added."""
        made = person(Role.reviewer, institution, name=name)
        self.fakes.experts.append(made)
        return made


@pytest_asyncio.fixture(loop_scope="session")
async def world(skipping: WorkflowEnvironment) -> AsyncIterator[World]:
    made = World(skipping, FakeActivities())
    async with Worker(
        skipping.client,
        task_queue=made.task_queue,
        workflows=WORKFLOWS,
        activities=made.fakes.activities(),
        workflow_runner=sandbox_runner(WORKFLOWS),  # the worker's own sandbox
    ):
        yield made
    await end(skipping.client, made.fakes.workflow_ids)
    await replay(skipping.client, made.fakes.workflow_ids)


async def end(client: Client, workflow_ids: list[str]) -> None:
    """Terminate what the test left running: its timers would fire for no worker when the
    next test moves the clock."""
    for wid in workflow_ids:
        with contextlib.suppress(RPCError):  # it had ended already
            await client.get_workflow_handle(wid).terminate("the test is over")


async def replay(client: Client, workflow_ids: list[str]) -> None:
    """Each workflow's history, replayed on today's code: its commands depend on nothing else."""
    assert workflow_ids, "the test ran no workflow: nothing would be replayed"
    histories: list[WorkflowHistory] = [
        await client.get_workflow_handle(wid).fetch_history() for wid in workflow_ids
    ]
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(WORKFLOWS),
    )
    for history in histories:
        await replayer.replay_workflow(history)


def person(role: Role, institution: str | None = None, *, name: str | None = None) -> Actor:
    return Actor(
        user_id=str(uuid.uuid4()),
        role=role,
        name=name or f"{role.value} {uuid.uuid4().hex[:6]}",
        institution_id=institution,
    )


def programme(**params: Any) -> ProgrammeStart:
    """An open programme with production-scale durations unless `params` says otherwise."""
    spec = ProgrammeCreate.model_validate(programme_body(params=params))
    return ProgrammeStart(programme_id=str(uuid.uuid4()), created_by="admin", spec=spec)


def application(world: World, of: ProgrammeStart, **content: Any) -> ApplicationStart:
    """An application of `world.applicant` to `of`, submitted now: eligible unless `content`
    says otherwise."""
    body = application_body(of.programme_id, **content)
    del body["programme_id"]
    return ApplicationStart(
        application_id=str(uuid.uuid4()),
        applicant=world.applicant,
        organisation_type=OrganisationType.medical_institution,
        programme=of,
        content=ApplicationContent.model_validate(body),
        submitted_at=datetime.now(UTC),
        request_digest=hashlib.sha256(body["title"].encode()).hexdigest(),
    )
