"""What a grantflow process (the API or a worker: `grantflow dev` starts each as a process of
its own) turns on at start: tracing when a collector is set, and the Temporal client's runtime
(the worker's metrics) and interceptors (its spans)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from temporalio.client import Interceptor
from temporalio.runtime import Runtime

from grantflow.observability import tracing
from grantflow.observability.worker import sdk_runtime
from grantflow.settings import Settings


@dataclass(frozen=True)
class ClientTelemetry:
    """What the process's Temporal client is connected with."""

    runtime: Runtime | None = None
    interceptors: Sequence[Interceptor] = ()


def start(settings: Settings, *, worker: bool, api: bool) -> ClientTelemetry:
    """Call once per process, before its client connects."""
    service = "dev" if worker and api else "worker" if worker else "api"
    if tracing.enabled(settings):
        tracing.start(settings, service)
    return ClientTelemetry(
        runtime=sdk_runtime(settings) if worker else None,
        interceptors=tracing.client_interceptors(settings),
    )
