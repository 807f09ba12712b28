"""A write PostgreSQL refuses for its data (a NUL in text, a number beyond its column, a row
that references nobody) is a poison write: run again, it is refused again. It must fail after
its first attempt, non-retryable, with an error line naming the activity and the workflow, and
put the application in the admins' flagged queue with the reason; not retry unseen forever."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities import WRITE_REFUSED
from activities.application import ApplicationActivities
from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.services.consistency import check
from grantflow.services.errors import refused_update
from schemas.application import StageChange, WithdrawalRequest
from schemas.common import Actor, Role, Stage
from tests.conftest import SESSION, Stack, User, application_body, create_programme, user_factory
from tests.faults import own_stack
from tests.test_application import stage_of, submit, timeline_kinds
from workflows import ids
from workflows.application import ApplicationWorkflow

pytestmark = [SESSION, pytest.mark.slow]
NUL = "\x00"

# What each poison changes in an otherwise good stage change, and the refusal it meets.
POISONS: dict[str, tuple[dict[str, Any], str]] = {
    "a NUL character in text": (
        {"reason": f"Funded{NUL}elsewhere"},
        "22021 CharacterNotInRepertoireError",
    ),
    "a number beyond its column": ({"seq": 2**31}, "(value out of int32 range)"),
    "an actor who is nobody": (
        {"actor": Actor(user_id=str(uuid.uuid4()), role=Role.admin, name="Nobody")},
        "23503 ForeignKeyViolationError",
    ),
}


async def flagged(stack: Stack, admin: User, programme_id: str) -> list[dict[str, Any]]:
    """The programme's applications in the admins' flagged list."""
    response = await stack.api.get(
        "/v1/admin/applications",
        params={"programme_id": programme_id, "flagged": "true"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@contextmanager
def refusals_logged() -> Iterator[list[dict[str, Any]]]:
    """The `write refused` error lines logged inside the block."""
    found: list[dict[str, Any]] = []
    with capture_logs() as logs:
        yield found
    found += [dict(line) for line in logs if line["event"] == "write refused"]


@pytest.mark.parametrize("poison", sorted(POISONS))
async def test_a_poison_write_fails_at_once_and_flags_the_application(
    stack: Stack, admin: User, applicant: User, poison: str
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"], specialty="dermatology")  # ineligible: it ends
    app = (await submit(stack, applicant, body)).json()
    assert app["stage"] == "ineligible"
    workflow_id = ids.application(app["id"])
    bad, refused_as = POISONS[poison]
    change = StageChange(
        application_id=app["id"],
        workflow_id=workflow_id,
        seq=3,
        stage=Stage.cancelled,
        kind="cancelled",
        at=datetime.now(UTC),
    ).model_copy(update=bad)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, activity_type="record_stage_change", workflow_id=workflow_id
    )
    record = ApplicationActivities(stack.pool).record_stage_change
    with refusals_logged() as logged, pytest.raises(ApplicationError) as raised:
        await env.run(record, change)

    error = raised.value
    assert error.non_retryable and error.type == WRITE_REFUSED
    assert error.message.startswith("record_stage_change: PostgreSQL refused the write: ")
    assert refused_as in error.message and NUL not in error.message
    [line] = logged
    assert line["log_level"] == "error" and line["activity"] == "record_stage_change"
    assert line["workflow_id"] == workflow_id and line["flagged"] is True
    # What the admin sees: the application flagged with the reason, and nothing else changed.
    [shown] = await flagged(stack, admin, programme["id"])
    assert shown["id"] == app["id"] and shown["stage"] == "ineligible"
    assert shown["flag_reason"].startswith("A change was refused by the database")
    assert "record_stage_change" in shown["flag_reason"] and refused_as in shown["flag_reason"]
    assert (await timeline_kinds(stack, applicant, app["id"]))[-1] == ("screened", "ineligible")


class Attempts(Interceptor):
    """Every activity attempt the worker makes that fails: (workflow id, activity, attempt)."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, str, int]] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Counting(next, self)


class _Counting(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, attempts: Attempts) -> None:
        super().__init__(next)
        self.attempts = attempts

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception:
            info = activity.info()
            self.attempts.failed.append((info.workflow_id or "", info.activity_type, info.attempt))
            raise


@pytest.mark.timeout(120)
async def test_a_withdrawal_postgresql_refuses_fails_once_and_the_admin_sees_why(
    temporal_env: WorkflowEnvironment, postgres: EmbeddedPostgres
) -> None:
    """PostgreSQL refuses a withdrawal's reason with a NUL in it. The API refuses a NUL at
    the door (tests/test_hostile_input.py), so the Update is sent to Temporal directly, as a
    client of the workflow other than the API could: the caller gets a refusal at once instead
    of a request that never returns, and the admin finds the application flagged with the
    reason and the refusal in the workflow's history."""
    attempts = Attempts()
    async with own_stack(temporal_env.client, postgres.url, interceptors=[attempts]) as stack:
        make = user_factory(stack)
        admin, applicant = await make(Role.admin), await make(Role.applicant)
        programme = await create_programme(stack, admin)
        body = application_body(programme["id"], requested_rub=31_000_000)  # a fixable gap
        app = (await submit(stack, applicant, body)).json()
        assert app["stage"] == "revision_requested"
        workflow_id = ids.application(app["id"])
        at_the_door = await stack.api.post(
            f"/v1/applications/{app['id']}/withdrawal",
            json={"reason": f"Funded{NUL}elsewhere"},
            headers=applicant.headers,
        )
        assert at_the_door.status_code == 422, at_the_door.text

        actor = Actor(
            user_id=applicant.id,
            role=Role.applicant,
            name=applicant.name,
            institution_id=applicant.institution_id,
        )
        with refusals_logged() as logged, pytest.raises(WorkflowUpdateFailedError) as refused:
            await stack.client.get_workflow_handle(workflow_id).execute_update(
                ApplicationWorkflow.withdraw,
                WithdrawalRequest(actor=actor, reason=f"Funded{NUL}elsewhere"),
            )
        refusal = refused_update(refused.value)
        assert refusal.startswith("record_stage_change: PostgreSQL refused the write: 22021")
        await asyncio.sleep(1.0)  # longer than the first retry's pause (0.2 s), had there been one
        assert attempts.failed == [(workflow_id, "record_stage_change", 1)]
        assert [(line["activity"], line["workflow_id"]) for line in logged] == [
            ("record_stage_change", workflow_id)
        ]

        [shown] = await flagged(stack, admin, programme["id"])
        assert shown["id"] == app["id"] and shown["stage"] == "revision_requested"
        assert "record_stage_change" in shown["flag_reason"]
        assert "CharacterNotInRepertoireError" in shown["flag_reason"]
        assert await refused_in_history(stack, workflow_id) == [refusal]


async def refused_in_history(stack: Stack, workflow_id: str) -> list[str]:
    """The messages of the refused writes the workflow's history records."""
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    found = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        failure = event.marker_recorded_event_attributes.failure  # a local activity's
        if failure.application_failure_info.type == WRITE_REFUSED:
            assert failure.application_failure_info.non_retryable
            found.append(failure.message)
    return found


async def test_a_refused_withdrawal_leaves_the_workflow_at_the_stage_on_record(
    stack: Stack, admin: User, applicant: User
) -> None:
    """The workflow takes a stage change only once PostgreSQL took it: after a refused
    withdrawal the workflow and the row both still say `revision_requested`, `grantflow check`
    finds them consistent, and the applicant's next (good) withdrawal goes through. On the
    session's stack, so `make histories` records the path. Broken on purpose (the new stage
    taken before the write, as before the patch `application-stage-after-write`), the
    workflow says `withdrawn` over a `revision_requested` row and ends there."""
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"], requested_rub=31_000_000)  # a fixable gap
    app = (await submit(stack, applicant, body)).json()
    assert app["stage"] == "revision_requested"
    handle = stack.client.get_workflow_handle(ids.application(app["id"]))
    actor = Actor(
        user_id=applicant.id,
        role=Role.applicant,
        name=applicant.name,
        institution_id=applicant.institution_id,
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            ApplicationWorkflow.withdraw,
            WithdrawalRequest(actor=actor, reason=f"Funded{NUL}elsewhere"),
        )
    assert refused_update(refused.value).startswith("record_stage_change: PostgreSQL refused")

    record = await handle.query(ApplicationWorkflow.record)
    assert (record.stage, record.seq) == (Stage.revision_requested, record.recorded)
    assert await stage_of(stack, applicant, app["id"]) == "revision_requested"
    found = await check(stack.pool, stack.client, programme["id"])
    assert found.consistent, found.as_json()

    response = await stack.api.post(
        f"/v1/applications/{app['id']}/withdrawal",
        json={"reason": "Funded elsewhere"},
        headers=applicant.headers,
    )
    assert response.status_code == 200, response.text
    assert await handle.result() == Stage.withdrawn
    assert (await timeline_kinds(stack, applicant, app["id"]))[-1] == ("withdrawn", "withdrawn")
