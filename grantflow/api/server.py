"""How grantflow serves the API: uvicorn on uvloop and httptools where they import (asyncio and
h11 otherwise), in one process or in N under uvicorn's process manager."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

import uvicorn
from fastapi import FastAPI

from grantflow.api.app import create_app
from grantflow.logging import configure_logging
from grantflow.settings import Settings

T = TypeVar("T")
FACTORY = "grantflow.api.server:app_from_environment"
WORKER_HEALTHCHECK_SECONDS = 30


def loop_name() -> Literal["uvloop", "asyncio"]:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def http_name() -> Literal["httptools", "h11"]:
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop_name() == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop when it is installed: what the API and the worker run on."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def app_from_environment() -> FastAPI:
    """The app each of N API processes builds for itself: its settings from the environment
    (which `serve_processes` filled in), its own pool and Temporal client in the lifespan."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)


def serve_processes(settings: Settings, processes: int) -> None:
    """Run `processes` API processes on one socket until SIGINT or SIGTERM. uvicorn's manager
    restarts one that dies; each process answers from its own pool and Temporal client."""
    assert settings.database_url and settings.temporal_address
    # The processes are spawned: they read the addresses a running stack wrote, and the
    # command's --host / --port, from the environment they inherit.
    os.environ.update(
        {
            "DATABASE_URL": settings.database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "GRANTFLOW_API_HOST": settings.api_host,
            "GRANTFLOW_API_PORT": str(settings.api_port),
        }
    )
    uvicorn.run(
        FACTORY,
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=processes,
        loop=loop_name(),
        http=http_name(),
        log_config=None,
        lifespan="on",
        # A process answers the manager's pings only once it has imported grantflow (temporalio,
        # FastAPI, pydantic): seconds on a busy host, past uvicorn's default of 5.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
