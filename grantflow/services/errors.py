"""The domain's refusals: what a service function raises when it will not do what was asked.

Every adapter maps these the same way: the JSON API to a status code (grantflow/api/errors.py),
the pages to a message beside the form, the CLI to a red line and an exit code. A service never
raises an HTTP exception, and an adapter never decides a refusal itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode


class ServiceError(Exception):
    """A refusal with a reason a person can read."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    """No such object, or not the caller's (ids reveal nothing: never a Forbidden for those)."""

    status = 404


class Forbidden(ServiceError):
    """The caller's role may not do this."""

    status = 403


class Conflict(ServiceError):
    """Not possible in the object's current state; the message says why."""

    status = 409


class Invalid(ServiceError):
    """The input is well formed but does not hold together. `errors` lists field errors in
    pydantic's shape (type, loc, msg) when there are any."""

    status = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class Busy(ServiceError):
    """Too many changes to one object in flight: come back after `retry_after` seconds."""

    status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """Temporal or PostgreSQL cannot be reached; nothing was changed."""

    status = 503


def refused_update(exc: WorkflowUpdateFailedError) -> str:
    """The reason a workflow's validator (or handler) gave for refusing an Update."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)


_UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


def from_temporal(exc: WorkflowUpdateFailedError | RPCError) -> ServiceError | None:
    """The domain refusal a Temporal error stands for, or None for one that is a fault."""
    if isinstance(exc, WorkflowUpdateFailedError):
        return Conflict(refused_update(exc))
    if exc.status == RPCStatusCode.NOT_FOUND:
        return NotFound("not found")
    if exc.status in _UNAVAILABLE:
        return Unavailable("the workflow service is unavailable; try again shortly")
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        # Temporal takes 10 Updates in flight per workflow (e.g. a council session's votes);
        # the client has already retried, so the caller is the one to come back.
        return Busy("too many changes to this object in flight; try again in a second")
    if exc.status == RPCStatusCode.FAILED_PRECONDITION and "failed state" in exc.message:
        # The workflow's last task failed three times running (a worker starved of CPU past
        # the deadlock timeout, or a bug): the server takes no Update or Query until a retry
        # of that task succeeds. Nothing was changed, and the server keeps retrying.
        return Unavailable("this object's workflow is retrying a failed step; try again shortly")
    return None


@contextmanager
def temporal_refusals() -> Iterator[None]:
    """Turn a refused Update, a missing workflow, a busy or unreachable server into the
    domain's refusal; any other Temporal error passes through as the fault it is."""
    try:
        yield
    except (WorkflowUpdateFailedError, RPCError) as exc:
        mapped = from_temporal(exc)
        if mapped is None:
            raise
        raise mapped from exc
