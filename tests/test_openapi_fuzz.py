"""schemathesis against the app's own OpenAPI document, with every check, as an admin and as an
applicant: no 500s, every answer matches the schema, bad input is refused and good input is
not. The app runs under uvicorn on a stack of its own, so what the fuzzer creates stays there;
the seed is fixed and the examples bounded, so that a run is repeatable and takes well under a
minute."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from temporalio.testing import WorkflowEnvironment

from grantflow.api.throttle import RefusalThrottle
from grantflow.dev.embedded import EmbeddedPostgres, free_port
from schemas.common import Role
from tests.conftest import SESSION, Stack, User, application_body, create_programme, user_factory
from tests.isolated import isolated_stack

pytestmark = [SESSION, pytest.mark.system]

SEED = 20261201
MAX_EXAMPLES = 6
# The coverage phase (every boundary of every schema) found two of the bugs fixed with this
# test, but takes 20-50 s on its own; `GRANTFLOW_FUZZ_PHASES=examples,coverage,fuzzing` runs it.
PHASES = os.environ.get("GRANTFLOW_FUZZ_PHASES", "examples,fuzzing")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@contextlib.asynccontextmanager
async def served(stack: Stack) -> AsyncIterator[str]:
    """The stack's app under uvicorn on a free port, in this event loop (where its pool and
    Temporal client live); yields its base URL."""
    port = free_port()
    app = stack.api._transport.app  # type: ignore[attr-defined]
    # The fuzzer presents a bad token to every operation on purpose, from one address: the
    # throttle would answer it 429 (as it should; tests/test_tokens.py), so not here.
    app.state.refusals = RefusalThrottle(limit=1_000_000)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def fuzz(base: str, user: User, tmp: Path, phases: str) -> tuple[int, str]:
    """One schemathesis run as `user`; its exit code and its report."""
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        phases,
        "--workers",
        "1",  # hypothesis parses lambdas with ast, which CPython 3.11 breaks across threads
        "--no-shrink",
        "--request-timeout",
        "20",
        "--header",
        f"Authorization: Bearer {user.token}",
        "--exclude-path",
        "/healthz",
        "--exclude-path",
        "/readyz",  # as /healthz: the same probe
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "NO_COLOR": "1"},
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest.mark.slow
async def test_schemathesis_finds_no_500s_and_no_schema_mismatches(
    postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with isolated_stack(postgres, temporal_env, "fuzz") as stack:
        make_user = user_factory(stack)
        admin = await make_user(Role.admin)
        applicant = await make_user(Role.applicant)
        programme = await create_programme(stack, admin)
        submitted = await stack.api.post(
            "/v1/applications", json=application_body(programme["id"]), headers=applicant.headers
        )
        assert submitted.status_code == 201, submitted.text
        async with served(stack) as base:
            for user in (admin, applicant):
                code, report = await fuzz(base, user, tmp_path, PHASES)
                assert code == 0, f"as {user.role}:\n{report}"
                assert "API Operations" in report, report


async def test_over_http_a_chunked_body_over_the_limit_is_refused(
    stack: Stack, admin: User
) -> None:
    """The same limit through a real HTTP server, which hands the body over in pieces."""
    limit = stack.settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    async with served(stack) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/v1/programmes",
            content=chunks(),
            headers={**admin.headers, "content-type": "application/json"},
        )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": f"body over {limit} bytes"}
