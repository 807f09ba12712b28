"""What a caller may send and what it gets back: fields it may not set are refused, never
applied; bodies over the limit are refused however they are sent; page sizes are bounded;
tokens are checked by hash in constant time; personal data stays out of workflow ids,
search attributes and logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from grantflow.notify import LogSender, Recipient
from grantflow.store import users as user_store
from schemas.common import Role
from schemas.notifications import NotificationKind, NotificationPublic
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    create_programme,
    eventually,
)
from tests.routes import api_routes, body_model
from tests.test_agreement import agreement
from tests.test_application import stage_of
from tests.test_council import Council
from tests.test_openapi_fuzz import served
from tests.test_review import reaches

pytestmark = [SESSION, pytest.mark.system]

# What no caller may set: the workflow decides these, or they belong to someone else.
FORBIDDEN = {
    "stage": "approved",
    "approved_rub": 1,
    "amount_approved_rub": 1,
    "actor": {"user_id": "x", "role": "admin", "name": "x"},
    "applicant_id": str(uuid.uuid4()),
    "reviewer_id": str(uuid.uuid4()),
    "scores": {"clinical_value": 10},
    "status": "accepted",
    "token_hash": "00",
}


async def _count(stack: Stack, programme_id: str) -> int:
    async with stack.pool.acquire() as conn:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM applications WHERE programme_id = $1::uuid", programme_id
        )
    return found


# --- mass assignment --------------------------------------------------------------------------


def _object_schemas(schema: dict[str, Any], spec: dict[str, Any], seen: set[str]) -> list[Any]:
    """Every object schema reachable from `schema` (through $ref, items, anyOf...)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _object_schemas(spec["components"]["schemas"][name], spec, seen)
    found = [schema] if "properties" in schema else []
    children = [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    for child in children:
        found.extend(_object_schemas(child, spec, seen))
    return found


async def test_every_request_body_refuses_unknown_fields(stack: Stack) -> None:
    spec = stack.api._transport.app.openapi()  # type: ignore[attr-defined]
    checked = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if "requestBody" not in op:
                continue
            body = op["requestBody"]["content"]["application/json"]["schema"]
            for schema in _object_schemas(body, spec, set()):
                assert schema.get("additionalProperties") is False, (method, path, schema)
                checked += 1
    assert checked >= 20


async def test_fields_a_caller_may_not_set_are_refused_on_every_route(
    stack: Stack, admin: User, applicant: User, make_user: UserFactory
) -> None:
    callers = [
        admin,
        applicant,
        await make_user(Role.reviewer, specialty="radiology"),
        await make_user(Role.council),
        await make_user(Role.coordinator),
    ]
    app = stack.api._transport.app  # type: ignore[attr-defined]
    routes = [(m, p, r) for m, p, r in api_routes(app) if body_model(r) is not None]
    assert len(routes) >= 20
    for method, path, route in routes:
        model = body_model(route)
        assert model is not None
        injected = {k: v for k, v in FORBIDDEN.items() if k not in model.model_fields}
        url = path.format_map({p.name: uuid.uuid4() for p in route.dependant.path_params})
        url = url.replace("{seq}", "1")
        for caller in callers:
            response = await stack.api.request(method, url, json=injected, headers=caller.headers)
            if response.status_code != 403:
                break
        assert response.status_code == 422, (method, path, response.text)
        extra = {e["loc"][-1] for e in response.json()["detail"] if e["type"] == "extra_forbidden"}
        assert extra == set(injected), (method, path, response.text)


async def test_a_submission_that_sets_its_own_stage_is_refused_not_applied(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    body = application_body(programme["id"], stage="approved", approved_rub=30_000_000)
    refused = await stack.api.post("/v1/applications", json=body, headers=applicant.headers)
    assert refused.status_code == 422
    assert {e["loc"][-1] for e in refused.json()["detail"]} == {"stage", "approved_rub"}
    assert await _count(stack, programme["id"]) == 0


# --- body size --------------------------------------------------------------------------------


async def _padded(document: bytes, total: int) -> AsyncIterator[bytes]:
    """The JSON document followed by whitespace up to `total` bytes: still valid JSON, sent in
    chunks without a Content-Length, as a streaming client does."""
    yield document
    sent = len(document)
    while sent < total:
        chunk = b" " * min(64 * 1024, total - sent)
        sent += len(chunk)
        yield chunk


async def test_a_chunked_body_over_the_limit_is_refused_and_changes_nothing(
    stack: Stack, admin: User, applicant: User
) -> None:
    programme = await create_programme(stack, admin)
    limit = stack.settings.max_body_bytes
    document = application_body(programme["id"])
    headers = {**applicant.headers, "content-type": "application/json"}
    encoded = json.dumps(document).encode()
    oversized = await stack.api.post(
        "/v1/applications", content=_padded(encoded, 2 * limit), headers=headers
    )
    assert "content-length" not in oversized.request.headers
    assert oversized.request.headers["transfer-encoding"] == "chunked"
    assert oversized.status_code == 413, oversized.text
    assert oversized.json() == {"detail": f"body over {limit} bytes"}
    assert await _count(stack, programme["id"]) == 0
    # The same body, chunked but under the limit, is an application like any other.
    fits = await stack.api.post(
        "/v1/applications", content=_padded(encoded, limit // 2), headers=headers
    )
    assert fits.status_code == 201, fits.text
    assert await _count(stack, programme["id"]) == 1


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    stack: Stack, admin: User
) -> None:
    limit = stack.settings.max_body_bytes
    for length in (str(limit + 1), "-1", "lots"):
        response = await stack.api.post(
            "/v1/programmes",
            content=b"{}",
            headers={**admin.headers, "content-type": "application/json", "content-length": length},
        )
        assert response.status_code == 413, (length, response.text)


async def test_over_http_a_body_of_megabytes_gets_a_413_the_client_can_read(
    stack: Stack, admin: User
) -> None:
    """A real server and a real socket: refused before it was read, the body was still on its
    way when the server closed the connection, so the client saw a reset, not the 413."""
    limit = stack.settings.max_body_bytes
    document = b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    headers = {**admin.headers, "content-type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(document), 256 * 1024):
            yield document[start : start + 256 * 1024]

    async with served(stack) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        for _ in range(3):  # a reset is likely, not certain: three tries each
            for content in (document, chunks()):
                response = await http.post("/v1/programmes", content=content, headers=headers)
                assert response.status_code == 413, response.text
                assert response.json() == {"detail": f"body over {limit} bytes"}
        assert (await http.get("/healthz")).status_code == 200


# --- page sizes -------------------------------------------------------------------------------


async def test_every_page_size_has_a_maximum_and_one_more_is_refused(
    stack: Stack, admin: User, applicant: User, make_user: UserFactory
) -> None:
    callers = [
        admin,
        applicant,
        await make_user(Role.reviewer, specialty="radiology"),
        await make_user(Role.coordinator),
    ]
    spec = stack.api._transport.app.openapi()  # type: ignore[attr-defined]
    paged = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            limit = next((p for p in op.get("parameters", []) if p["name"] == "limit"), None)
            if limit is None:
                continue
            paged += 1
            maximum = limit["schema"].get("maximum")
            assert maximum is not None, (method, path)
            for caller in callers:
                ok = await stack.api.get(path, params={"limit": maximum}, headers=caller.headers)
                if ok.status_code != 403:
                    break
            assert ok.status_code == 200, (path, ok.text)
            over = await stack.api.get(path, params={"limit": maximum + 1}, headers=caller.headers)
            assert over.status_code == 422, (path, over.text)
            assert over.json()["detail"][0]["loc"] == ["query", "limit"]
    assert paged >= 8


# --- tokens -----------------------------------------------------------------------------------


async def test_tokens_are_stored_as_hashes_and_compared_in_constant_time(
    stack: Stack, applicant: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT u::text AS text, token_hash FROM users u WHERE id = $1::uuid", applicant.id
        )
    assert row is not None
    assert bytes(row["token_hash"]) == hashlib.sha256(applicant.token.encode()).digest()
    assert applicant.token not in row["text"]
    # Near misses are refused: the last character, the case, a prefix, the token with a suffix.
    token = applicant.token
    near = [token[:-1] + ("A" if token[-1] != "A" else "B"), token.upper(), token[:-1], token + "x"]
    for wrong in near:
        response = await stack.api.get("/v1/me", headers={"Authorization": f"Bearer {wrong}"})
        assert response.status_code == 401, wrong
    # The final comparison is hmac.compare_digest, on the digests, never `==` on the tokens.
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(user_store, "hmac", SimpleNamespace(compare_digest=spy))
    assert (await stack.api.get("/v1/me", headers=applicant.headers)).status_code == 200
    assert compared == [(row["token_hash"], row["token_hash"])]


# --- personal data ----------------------------------------------------------------------------


async def test_no_personal_data_in_workflow_ids_search_attributes_or_logs(
    stack: Stack, admin: User, make_user: UserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    started = datetime.now(UTC)
    council = Council(stack, admin, make_user)
    members = await council.setup()
    applicant = await make_user(Role.applicant, name="Zinaida Quarrington-Vetrova")
    people = [admin, applicant, *council.reviewers, *members]
    async with stack.pool.acquire() as conn:
        for n, person in enumerate(people):
            await conn.execute(
                "UPDATE users SET email = $2 WHERE id = $1::uuid",
                person.id,
                f"person{n}.{uuid.uuid4().hex[:6]}@example.org",
            )
        emails = [
            r["email"]
            for r in await conn.fetch(
                "SELECT email FROM users WHERE id = ANY($1::uuid[])", [p.id for p in people]
            )
        ]
    caplog.set_level(logging.INFO)
    with capture_logs() as logs:
        app = await council.reviewed(applicant, 8)
        session = await council.session()
        for member in members:
            await council.vote(session, member, app, "approve")
        assert (await council.close(session)).json()[0]["outcome"] == "approved"
        await reaches(stack, applicant, app["id"], "approved")
        await agreement(council, applicant, app)
        await stack.api.post(
            f"/v1/applications/{app['id']}/agreement/acceptance", headers=applicant.headers
        )
        await reaches(stack, applicant, app["id"], "agreement")
    personal = [p.name for p in people] + emails
    assert logs, "the lifecycle logged nothing: the capture is broken"
    logged = str(logs) + caplog.text
    for value in personal:
        assert value not in logged, value

    query = f"TaskQueue = '{stack.settings.task_queue}' AND StartTime >= '{started.isoformat()}'"

    async def executions() -> list[Any]:
        found = [e async for e in stack.client.list_workflows(query)]
        ids = " ".join(e.id for e in found)
        return found if app["id"] in ids and f"agreement-{app['id']}" in ids else []

    found = await eventually(executions)
    assert {e.id for e in found} >= {f"application-{app['id']}", f"review-{app['id']}"}
    for execution in found:
        description = await stack.client.get_workflow_handle(execution.id).describe()
        seen = f"{execution.id} {description.typed_search_attributes} {await description.memo()}"
        for value in personal:
            assert value not in seen, (execution.id, value)


async def test_the_log_sender_logs_who_by_id_only() -> None:
    note = NotificationPublic.model_validate(
        {
            "id": 1,
            "kind": NotificationKind.task_offered,
            "subject": "A review is offered to you",
            "body": "Please accept or decline.",
            "application_id": None,
            "task_id": None,
            "created_at": datetime.now(UTC),
            "delivered_at": None,
        }
    )
    with capture_logs() as logs:
        await LogSender().send(note, Recipient("u-1", "Irina Volkova", "irina@example.org"))
    assert logs and logs[0]["user_id"] == "u-1"
    assert "Irina Volkova" not in str(logs) and "irina@example.org" not in str(logs)


async def test_a_wrong_method_is_told_every_method_the_path_serves(
    stack: Stack, admin: User
) -> None:
    # Two routes share the path: the answer names both, not only the first one's.
    response = await stack.api.request("DELETE", "/v1/programmes", headers=admin.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_a_workflow_retrying_a_failed_task_answers_503_not_502(
    stack: Stack, admin: User, applicant: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a workflow's last task keeps failing, Temporal refuses Updates with
    FAILED_PRECONDITION: the caller is told to try again (503), not shown a 502 as for a bug
    in the API, and nothing changes."""
    programme = await create_programme(stack, admin)
    submitted = await stack.api.post(
        "/v1/applications", json=application_body(programme["id"]), headers=applicant.headers
    )
    assert submitted.status_code == 201, submitted.text
    application_id = submitted.json()["id"]

    async def failing(*_: Any, **__: Any) -> Any:
        raise RPCError(
            "Unable to perform workflow execution update due to Workflow Task in failed state.",
            RPCStatusCode.FAILED_PRECONDITION,
            b"",
        )

    monkeypatch.setattr(WorkflowHandle, "execute_update", failing)
    refused = await stack.api.post(
        f"/v1/applications/{application_id}/withdrawal",
        json={"reason": "moving abroad"},
        headers=applicant.headers,
    )
    assert refused.status_code == 503, refused.text
    assert "retrying a failed step" in refused.json()["detail"]
    monkeypatch.undo()
    assert await stage_of(stack, applicant, application_id) == "under_review"


async def test_more_changes_in_flight_than_temporal_takes_are_told_to_retry(
    stack: Stack, admin: User, applicant: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Temporal takes 10 Updates in flight per workflow and refuses more with
    RESOURCE_EXHAUSTED (after the client's own retries): the caller gets 429 with Retry-After
    and the application is untouched, not a 502."""
    programme = await create_programme(stack, admin)
    submitted = await stack.api.post(
        "/v1/applications", json=application_body(programme["id"]), headers=applicant.headers
    )
    assert submitted.status_code == 201, submitted.text
    application_id = submitted.json()["id"]

    async def busy(*_: Any, **__: Any) -> Any:
        raise RPCError(
            "limit on number of concurrent in-flight updates has been reached (10)",
            RPCStatusCode.RESOURCE_EXHAUSTED,
            b"",
        )

    monkeypatch.setattr(WorkflowHandle, "execute_update", busy)
    refused = await stack.api.post(
        f"/v1/applications/{application_id}/withdrawal",
        json={"reason": "moving abroad"},
        headers=applicant.headers,
    )
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert "try again" in refused.json()["detail"]
    monkeypatch.undo()
    assert await stage_of(stack, applicant, application_id) == "under_review"
    # Told to retry, the applicant does, and it takes once.
    retried = await stack.api.post(
        f"/v1/applications/{application_id}/withdrawal",
        json={"reason": "moving abroad"},
        headers=applicant.headers,
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["stage"] == "withdrawn"
    timeline = await stack.api.get(
        f"/v1/applications/{application_id}/timeline", headers=applicant.headers
    )
    assert [e["kind"] for e in timeline.json()].count("withdrawn") == 1
