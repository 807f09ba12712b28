"""What the `grantflow` commands share: the settings, where messages and data go, the
resources and the caller a command acts as, and how a refusal ends a command.

Streams: data (a token, JSON, a table of results) goes to stdout, so that scripts can
capture it; messages (progress, confirmations, errors) go to stderr.

Exit codes: 0 done; 1 the command ran and its answer is no (`check` found disagreements,
`simulate` did not end final and consistent); 2 nothing was done: a usage error, or the
service refused (an unknown id is one: NotFound; a rule broken; a server unavailable)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from grantflow.db import create_pool
from grantflow.logging import configure_logging
from grantflow.services.context import Caller, Resources
from grantflow.services.errors import ServiceError, from_temporal
from grantflow.settings import Settings
from schemas.common import Actor, Role

T = TypeVar("T")
data = Console()  # stdout
messages = Console(stderr=True)

# Whoever can run the CLI against a database can read and write all of it already, so the CLI
# needs no token: it acts as this admin. Its commands only read, or create users (no audit
# entry names an actor there), so the placeholder id is never recorded.
OPERATOR = Caller(
    actor=Actor(user_id="00000000-0000-0000-0000-000000000000", role=Role.admin, name="CLI"),
    organisation_type=None,
)
AS_ADMIN = "Runs as an admin, with no token: whoever can reach the database may."


def settings() -> Settings:
    found = Settings()
    configure_logging(found.log_format, found.log_level)
    return found


def fail(message: str) -> NoReturn:
    """One red line on stderr, and exit 2: nothing was done."""
    # soft_wrap: one line however narrow the terminal, so that it can be read (and grepped) whole.
    messages.print(f"[red]{escape(message)}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def resolved() -> Settings:
    """The settings with a running stack's addresses, or exit 2 saying how to get one."""
    try:
        return settings().resolved()
    except RuntimeError as exc:
        fail(str(exc))


async def _client(found: Settings, *, wait: bool) -> Client:
    assert found.temporal_address
    if wait:
        from grantflow.dev.stack import connect_with_retry

        return await connect_with_retry(found.temporal_address, found.temporal_namespace)
    # Lazy: a command that never asks Temporal (users, applications, export) works while
    # Temporal is down. The converter is the one grantflow.temporal.connect uses.
    return await Client.connect(
        found.temporal_address,
        namespace=found.temporal_namespace,
        data_converter=pydantic_data_converter,
        lazy=True,
    )


@asynccontextmanager
async def resources(
    found: Settings, *, wait_for_temporal: bool = False
) -> AsyncIterator[Resources]:
    """A small pool and a Temporal client for one command, closed when it ends."""
    assert found.database_url
    pool = await create_pool(found.database_url, min_size=1, max_size=4)
    try:
        yield Resources(found, pool, await _client(found, wait=wait_for_temporal))
    finally:
        await pool.close()


def run(
    action: Callable[[Resources, Caller], Awaitable[T]], *, wait_for_temporal: bool = False
) -> T:
    """Do one service action as the CLI's admin against the running stack (or the servers
    the environment names); a refusal ends the command with its reason and exit 2."""
    found = resolved()

    async def go() -> T:
        async with resources(found, wait_for_temporal=wait_for_temporal) as res:
            return await action(res, OPERATOR)

    try:
        return asyncio.run(go())
    except ServiceError as exc:
        fail(exc.message)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        # A read service that does not wrap its Temporal calls: the same refusals.
        mapped = from_temporal(exc)
        if mapped is None:
            raise
        fail(mapped.message)
