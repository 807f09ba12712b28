"""The worker's metrics: the Temporal SDK's own, served by its Prometheus exporter on a port of
the worker's (`GRANTFLOW_WORKER_METRICS_PORT`): workflow and activity task latencies,
schedule-to-start, sticky cache hits and misses, free task slots, poll and request counts."""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from grantflow.settings import Settings


def sdk_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime whose metrics are served at
    `http://$GRANTFLOW_WORKER_METRICS_HOST:$GRANTFLOW_WORKER_METRICS_PORT/metrics`, or None
    (the SDK's default runtime, no metrics served) when no port is set. Its client's workers
    report through it."""
    if settings.worker_metrics_port is None:
        return None
    address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
    try:
        return _runtime(address)
    except ValueError as exc:  # the exporter could not bind: say which setting to change
        raise RuntimeError(
            f"the worker's metrics cannot listen on {address} ({exc}): free the port or set "
            "GRANTFLOW_WORKER_METRICS_PORT to another"
        ) from None


def _runtime(address: str) -> Runtime:
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=address,
                # Prometheus' conventions, so a dashboard reads them like any exporter's.
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )
