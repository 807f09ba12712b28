"""structlog set up once per process: readable on a terminal, JSON in production."""

from __future__ import annotations

import logging
import sys

import structlog

from grantflow.observability.tracing import add_trace_ids


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Route structlog and the standard library's logging (uvicorn, temporalio) through one
    renderer, so every line carries the same timestamp and bound context."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,  # the line leads to its trace (with tracing on)
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        # A plain traceback: structlog's default with rich installed prints every frame's
        # locals, megabytes for a request body, which held the API and the worker for seconds
        # on each logged exception (uvicorn's and temporalio's included).
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at info: the simulator's thousands of calls would bury its
    # progress bars (and the API's own access log already has them).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
