"""`grantflow check` as an operator runs it against the running stack: a clean programme
passes; a row changed behind the workflows' back, and a workflow terminated under an open row,
are named and fail the command."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from tests.conftest import SESSION, Stack, User, application_body, create_programme
from tests.test_cli import Run, grantflow

pytestmark = [SESSION, pytest.mark.slow]


async def programme_with_applications(
    stack: Stack, admin: User, applicant: User, count: int = 3
) -> tuple[str, list[dict[str, Any]]]:
    """A programme of its own specialty (no reviewer has it, so its applications wait in
    review and nothing moves while the check runs), with `count` applications."""
    specialty = f"check-{uuid.uuid4().hex[:8]}"
    programme = await create_programme(stack, admin, specialties=[specialty])
    apps = []
    for _ in range(count):
        body = application_body(programme["id"], specialty=specialty)
        response = await stack.api.post("/v1/applications", json=body, headers=applicant.headers)
        assert response.status_code == 201, response.text
        assert response.json()["stage"] == "under_review"
        apps.append(response.json())
    return programme["id"], apps


async def check(stack: Stack, tmp_path: Path, programme_id: str, *flags: str) -> Run:
    return await grantflow(stack, tmp_path, "check", "--programme", programme_id, *flags)


async def test_a_clean_programme_passes(
    stack: Stack, tmp_path: Path, admin: User, applicant: User
) -> None:
    programme_id, _ = await programme_with_applications(stack, admin, applicant)
    plain = await check(stack, tmp_path, programme_id)
    assert plain.code == 0, plain.err + plain.out
    assert "3 applications checked: workflows and rows agree" in plain.out
    as_json = await check(stack, tmp_path, programme_id, "--json")
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out) == {"checked": 3, "consistent": True, "disagreements": []}


async def test_a_row_changed_behind_the_workflow_is_named(
    stack: Stack, tmp_path: Path, admin: User, applicant: User
) -> None:
    programme_id, apps = await programme_with_applications(stack, admin, applicant)
    corrupted = apps[1]["id"]
    async with stack.pool.acquire() as conn:
        await conn.execute(
            "UPDATE applications SET stage = 'reviewed' WHERE id = $1", uuid.UUID(corrupted)
        )
    plain = await check(stack, tmp_path, programme_id)
    assert plain.code == 1, plain.err + plain.out
    assert corrupted in plain.out and "reviewed" in plain.out
    as_json = await check(stack, tmp_path, programme_id, "--json")
    assert as_json.code == 1
    found = json.loads(as_json.out)
    assert found["consistent"] is False
    assert found["disagreements"] == [
        {
            "application_id": corrupted,
            "workflow_id": f"application-{corrupted}",
            "field": "stage",
            "workflow": "under_review",
            "database": "reviewed",
        }
    ]


async def test_a_terminated_workflow_under_an_open_row_is_found(
    stack: Stack, tmp_path: Path, admin: User, applicant: User
) -> None:
    programme_id, apps = await programme_with_applications(stack, admin, applicant, count=2)
    victim = apps[0]["id"]
    handle = stack.client.get_workflow_handle(f"application-{victim}")
    await handle.terminate(reason="an operator's mistake, for the test")
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
    result = await check(stack, tmp_path, programme_id, "--json")
    assert result.code == 1, result.err
    found = json.loads(result.out)["disagreements"]
    assert found == [
        {
            "application_id": victim,
            "workflow_id": f"application-{victim}",
            "field": "workflow",
            "workflow": "terminated",
            "database": "under_review",
        }
    ]


async def test_all_holds_closed_workflows_against_their_final_rows(
    stack: Stack, tmp_path: Path, admin: User, applicant: User
) -> None:
    programme_id, apps = await programme_with_applications(stack, admin, applicant, count=2)
    closed = apps[0]["id"]
    withdrawn = await stack.api.post(
        f"/v1/applications/{closed}/withdrawal",
        json={"reason": "Funded elsewhere."},
        headers=applicant.headers,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    handle = stack.client.get_workflow_handle(f"application-{closed}")
    assert await handle.result() == "withdrawn"
    clean = await check(stack, tmp_path, programme_id, "--all", "--json")
    assert clean.code == 0, clean.out + clean.err
    async with stack.pool.acquire() as conn:
        await conn.execute(
            "UPDATE applications SET requested_rub = 1 WHERE id = $1", uuid.UUID(closed)
        )
    # Only open applications by default: the closed one is not looked at...
    assert (await check(stack, tmp_path, programme_id)).code == 0
    # ...with --all it is, and its workflow still answers for it.
    found = await check(stack, tmp_path, programme_id, "--all", "--json")
    assert found.code == 1
    assert [
        (d["application_id"], d["field"], d["workflow"], d["database"])
        for d in json.loads(found.out)["disagreements"]
    ] == [(closed, "requested_rub", "30000000", "1")]
