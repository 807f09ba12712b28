"""Every side effect of the lifecycle. Each activity is idempotent: its docstring says why."""

from temporalio import activity


def workflow_id() -> str:
    """The id of the workflow that scheduled the running activity."""
    found = activity.info().workflow_id
    if not found:
        raise RuntimeError("grantflow's activities run only on behalf of a workflow")
    return found
