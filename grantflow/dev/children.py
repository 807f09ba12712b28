"""`grantflow worker` and `grantflow api` as processes of their own beside the servers, as
production runs them: `grantflow dev` and `grantflow simulate --embedded` start them so that
the API and the worker each have a core (and a GIL) of their own."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from grantflow.dev.embedded import ManagedProcess, die_with_parent
from grantflow.settings import Settings

GRANTFLOW = Path(sys.executable).parent / "grantflow"
# The worker's drain (workers/main.py: graceful_shutdown_timeout, 10 s) and the API's open
# requests fit well inside this; past it the child is killed.
STOP_WITHIN = 60.0
# Held while a line (or the parent's banner) is written: none is ever cut by another.
echoing = threading.Lock()


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of a child `grantflow` command: the servers' addresses and the API's
    address given outright, so that it reads no runtime.json (which names its parent)."""
    assert settings.database_url and settings.temporal_address
    return os.environ | {
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "DATABASE_URL": settings.database_url,
        "GRANTFLOW_HOME": str(settings.home.resolve()),
        "GRANTFLOW_API_HOST": settings.api_host,
        "GRANTFLOW_API_PORT": str(settings.api_port),
    }


class GrantflowChild(ManagedProcess):
    """`grantflow <args>` in a session of its own (a terminal's Ctrl-C reaches the parent,
    which stops its children in order) that stops when its parent dies, even by SIGKILL. Its
    output goes to `log_path`; with `echo`, also to the parent's stdout, each line led by
    `echo` (the parent's terminal shows every child's log, and says whose it is).

    When the parent dies, the child gets `orphaned`: SIGKILL by default, since the servers
    it would drain towards are stopping too, and PostgreSQL's stop waits for its clients (a
    worker draining against a vanished Temporal outlived its parent by half a minute on a
    loaded machine). `grantflow api --processes N` wants SIGTERM: its manager then stops the
    N processes, which would otherwise be left holding the port."""

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        echo: str | None = None,
        orphaned: int = signal.SIGKILL,
    ) -> None:
        super().__init__(args[0], log_path)
        self.args, self.env, self.echo, self.orphaned = args, dict(env), echo, orphaned
        self._pump: threading.Thread | None = None

    def start(self, cwd: Path | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(GRANTFLOW), *self.args],
            env=self.env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.echo is not None else log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=functools.partial(die_with_parent, self.orphaned)
            if sys.platform == "linux"
            else None,
        )
        if self.echo is None:
            log.close()
            return
        assert self.process.stdout is not None
        self._pump = threading.Thread(
            target=_pump, args=(self.process.stdout, log, self.echo.encode()), daemon=True
        )
        self._pump.start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_WITHIN) -> None:
        """As an orchestrator stops it: SIGTERM, then its orderly stop (the worker drains)."""
        super().stop(sig, timeout)
        self._flushed()

    def exited(self) -> str | None:
        """None while it runs; once it has ended, one line that says how, and its last words."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0 and -code in signal.Signals._value2member_map_
            else f"exited with code {code}"
        )
        self._flushed()
        command = " ".join(["grantflow", *self.args])
        return f"`{command}` {how}: {self.log_tail(1)} (its log: {self.log_path})"

    async def polling(self, client: Client, task_queue: str) -> bool:
        """Whether this process's worker polls `task_queue` yet (by the identity the SDK gives
        it by default: its pid and host)."""
        assert self.process is not None
        identity = f"{self.process.pid}@{socket.gethostname()}"
        return await worker_polls(client, task_queue, identity)

    def _flushed(self, within: float = 2.0) -> None:
        # Its last lines are in the log once the pump has read to the end of the pipe (a child
        # of its own that outlives it, as uvicorn's processes may, holds the pipe open).
        if self._pump is not None:
            self._pump.join(within)


def _pump(source: IO[bytes], log: IO[bytes], prefix: bytes) -> None:
    """Copy a child's output to its log and, each line led by `prefix`, to our stdout. A
    terminal that went away must not stop the copying: a child blocked on a full pipe would
    hang, and its stop with it."""
    with source, log:
        for line in iter(source.readline, b""):
            log.write(line)
            log.flush()
            try:
                with echoing:
                    sys.stdout.buffer.write(prefix + line)
                    sys.stdout.buffer.flush()
            except (OSError, ValueError):
                pass


async def worker_polls(client: Client, task_queue: str, identity: str) -> bool:
    """Whether the worker of `identity` polls `task_queue` for activities yet."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    described = await client.workflow_service.describe_task_queue(request)
    return any(p.identity == identity for p in described.pollers)
