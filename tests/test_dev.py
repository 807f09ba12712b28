"""`grantflow dev` (what `make run` runs) as a newcomer lives it: it starts the embedded servers
under GRANTFLOW_HOME, then the worker and the API as processes of their own, hands out the demo
tokens; Ctrl-C stops every child process and exits 0; a child that dies stops the rest and is
told in one line; the next start finds every application, workflow and token where it was."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from grantflow.dev.embedded import free_port
from tests.conftest import SESSION, application_body, programme_body

# The tests block (subprocesses, polling), so they run in a thread: the session's event loop,
# whose worker may still be finishing earlier tests' workflows, must not stall meanwhile.
pytestmark = [
    SESSION,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
]
GRANTFLOW = Path(sys.executable).parent / "grantflow"
START_WITHIN = 120.0
STOP_WITHIN = 30.0


# --- processes, from /proc -------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(root: int) -> dict[int, int]:
    """Every process below `root` (also those in sessions of their own), by pid, with its start
    time, so a pid reused later is not mistaken for a survivor."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat:
            children.setdefault(stat[1], []).append(pid)
            started[pid] = stat[2]
    found: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = started[pid]
        todo += children.get(pid, [])
    return found


def alive(processes: dict[int, int]) -> dict[int, str]:
    """Those of `processes` still running (zombies are dead), with their command lines."""
    left = {}
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat and stat[2] == started and stat[0] not in ("Z", "X"):
            left[pid] = _cmdline(pid)
    return left


def mentioning(path: Path) -> dict[int, str]:
    """Live processes whose command line names `path` (the servers' data directories)."""
    me = os.getpid()
    found = {}
    for pid in _pids():
        cmd = _cmdline(pid)
        stat = _stat(pid)
        if pid != me and str(path) in cmd and stat and stat[0] not in ("Z", "X"):
            found[pid] = cmd
    return found


# --- one `grantflow dev` --------------------------------------------------------------------


class Dev:
    """A `grantflow dev` in a terminal of its own, its output in a file of tmp_path."""

    def __init__(self, tmp_path: Path, env: dict[str, str], name: str) -> None:
        self.home = Path(env["GRANTFLOW_HOME"])
        self.log = tmp_path / f"{name}.log"
        self.api = f"http://127.0.0.1:{env['GRANTFLOW_API_PORT']}"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(GRANTFLOW), "dev"],
                env=env,
                cwd=tmp_path,  # no stray .env from the checkout
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal's foreground job
            )
        self.children: dict[int, int] = {}

    def output(self) -> str:
        parts = [f"--- {self.log.name} ---\n" + self.log.read_text(errors="replace")]
        for server in ("postgres.log", "temporal.log"):
            path = self.home / server
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-30:]
                parts.append(f"--- {server} (tail) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def wait_healthy(self) -> None:
        """Until the banner says it runs (the API answers, the worker polls) and /healthz
        agrees."""
        deadline = time.monotonic() + START_WITHIN
        while time.monotonic() < deadline:
            code = self.process.poll()
            assert code is None, f"`grantflow dev` exited with {code} while starting"
            if "grantflow is running" in self.log.read_text(errors="replace"):
                response = httpx.get(f"{self.api}/healthz", timeout=10)
                assert response.status_code == 200, response.text
                self.children = descendants(self.process.pid)
                return
            time.sleep(0.2)
        raise AssertionError(f"no banner within {START_WITHIN}s")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to its process group; its exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`grantflow dev` still running {STOP_WITHIN}s after SIGINT"
            ) from None

    def survivors(self) -> dict[int, str]:
        """Processes it started that still run. Checked at once: a clean stop waits for each
        server, so none is left the moment it exits (the servers' PR_SET_PDEATHSIG would kill
        them a moment later, which would hide an unclean stop)."""
        return alive(self.children) | mentioning(self.home)

    def kill(self) -> None:
        """After a failure: leave nothing running behind the test."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in {**alive(self.children), **mentioning(self.home)}:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def running(tmp_path: Path, env: dict[str, str], name: str) -> Iterator[Dev]:
    dev = Dev(tmp_path, env, name)
    try:
        dev.wait_healthy()
        yield dev
    except BaseException:
        print(dev.output())  # shown by pytest for a failed test: the reason is in there
        raise
    finally:
        dev.kill()


def grantflow_children(dev: Dev) -> dict[str, int]:
    """The `grantflow worker` and `grantflow api` processes it started, by command."""
    found = {}
    for pid in dev.children:
        words = _cmdline(pid).split()  # python3 .../grantflow worker
        for program, command in itertools.pairwise(words):
            if Path(program).name == "grantflow" and command in ("worker", "api"):
                found[command] = pid
    return found


def stop(dev: Dev, times: int) -> None:
    """Ctrl-C, then: exit 0 in time, no child left, PostgreSQL stopped by grantflow (a fast
    shutdown, not its death-of-parent signal), runtime.json gone. `times`: stops so far."""
    assert dev.children, "no child process seen while running: the check below would be empty"
    commands = [_cmdline(pid) for pid in dev.children]
    servers = [cmd for cmd in commands if str(dev.home) in cmd]
    assert len(servers) >= 2, f"expected postgres and temporal under {dev.home}: {commands}"
    # The worker and the API in processes of their own (each a core), their lines told apart.
    children = grantflow_children(dev)
    assert sorted(children) == ["api", "worker"], commands
    assert children["api"] != children["worker"]
    shown = dev.log.read_text(errors="replace")
    prefixes = {line[:9] for line in shown.splitlines()}  # the log may begin with either
    assert {"worker | ", "api    | "} <= prefixes, shown
    code = dev.interrupt()
    assert code == 0, f"`grantflow dev` exited with {code} after SIGINT"
    assert dev.survivors() == {}
    postgres_log = (dev.home / "postgres.log").read_text(errors="replace")
    assert postgres_log.count("received fast shutdown request") == times
    last_stop = postgres_log.rindex("received fast shutdown request")
    assert "database system is shut down" in postgres_log[last_stop:]
    assert not (dev.home / "runtime.json").exists()
    assert "shutting down" in dev.log.read_text(errors="replace")


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """A directory for one test's `grantflow dev`, outside pytest's temporary root: run as
    root, PostgreSQL runs as a user of its own, which must reach its data directory, and each
    pytest session that starts on the machine resets that root to 0700."""
    made = Path(tempfile.mkdtemp(prefix="grantflow-dev-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


# --- the test -------------------------------------------------------------------------------


def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS") and not k.startswith("GRANTFLOW_")
    }
    ports = {free_port() for _ in range(8)}
    assert len(ports) >= 4
    api, temporal, ui, postgres = sorted(ports)[:4]
    env.update(
        HOME=str(tmp_path),
        GRANTFLOW_HOME=str(tmp_path / "home"),
        GRANTFLOW_API_PORT=str(api),
        GRANTFLOW_TEMPORAL_PORT=str(temporal),
        GRANTFLOW_TEMPORAL_UI_PORT=str(ui),
        GRANTFLOW_POSTGRES_PORT=str(postgres),
        COLUMNS="200",
    )
    return env


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def demo_tokens(home: Path) -> dict[str, Any]:
    """The demo users of $GRANTFLOW_HOME/demo-tokens.json, by name."""
    path = home / "demo-tokens.json"
    assert path.stat().st_mode & 0o777 == 0o600
    return {d["user"]["name"]: d for d in json.loads(path.read_text())}


def users_create(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`grantflow users create` in a second terminal, finding the stack by GRANTFLOW_HOME."""
    return subprocess.run(
        [str(GRANTFLOW), "users", "create", *args],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(2 * START_WITHIN + 4 * STOP_WITHIN + 60)
async def test_dev_serves_stops_cleanly_and_keeps_everything(dev_dir: Path) -> None:
    await asyncio.to_thread(serves_stops_cleanly_and_keeps_everything, dev_dir)


def serves_stops_cleanly_and_keeps_everything(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    home = Path(env["GRANTFLOW_HOME"])

    with (
        running(tmp_path, env, "first-start") as dev,
        httpx.Client(base_url=dev.api, timeout=30) as api,
    ):
        demo = demo_tokens(home)
        roles = sorted(d["user"]["role"] for d in demo.values())
        assert (
            roles
            == ["admin"] + ["applicant"] * 3 + ["coordinator"] + ["council"] * 3 + ["reviewer"] * 6
        )
        admin, anna = demo["Admin"]["token"], demo["Anna Applicant"]["token"]
        assert admin in dev.log.read_text()  # the banner shows them on first start

        me = api.get("/v1/me", headers=bearer(anna))
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "applicant"

        programme = api.post("/v1/programmes", json=programme_body(), headers=bearer(admin))
        assert programme.status_code == 201, programme.text
        body = application_body(programme.json()["id"])
        submitted = api.post(
            "/v1/applications", json=body, headers={**bearer(anna), "Idempotency-Key": "dev-1"}
        )
        assert submitted.status_code == 201, submitted.text
        app = submitted.json()
        assert app["stage"] == "under_review", app  # screened by its workflow, eligible
        url = f"/v1/applications/{app['id']}"
        timeline = api.get(f"{url}/timeline", headers=bearer(anna)).json()
        assert [(e["kind"], e["stage"]) for e in timeline][:2] == [
            ("submitted", "screening"),
            ("screened", "under_review"),
        ]

        # A second terminal: `grantflow users create` finds the running stack by GRANTFLOW_HOME.
        made = users_create(
            env,
            *("--role", "reviewer", "--name", "Dr. Irina Volkova"),
            *("--institution", "City Clinical Hospital 52", "--specialty", "cardiology"),
        )
        assert made.returncode == 0, made.stdout + made.stderr
        irina = made.stdout.strip().splitlines()[-1]
        assert api.get("/v1/me", headers=bearer(irina)).json()["role"] == "reviewer"

        stop(dev, times=1)

    tokens_before = (home / "demo-tokens.json").read_text()
    with (
        running(tmp_path, env, "second-start") as dev,
        httpx.Client(base_url=dev.api, timeout=30) as api,
    ):
        assert admin not in dev.log.read_text()  # tokens are shown once, on the first start only
        assert (home / "demo-tokens.json").read_text() == tokens_before

        again = api.get(url, headers=bearer(anna))
        assert again.status_code == 200, again.text
        assert again.json()["stage"] == "under_review"
        assert api.get(f"{url}/timeline", headers=bearer(anna)).json() == timeline
        retried = api.post(
            "/v1/applications", json=body, headers={**bearer(anna), "Idempotency-Key": "dev-1"}
        )
        assert retried.status_code in (200, 201), retried.text
        assert retried.json()["id"] == app["id"]  # the idempotency key survived too
        me = api.get("/v1/me", headers=bearer(irina))
        assert me.status_code == 200 and me.json()["name"] == "Dr. Irina Volkova", me.text

        # Its workflow survived as well: it still takes the withdrawal update.
        withdrawn = api.post(f"{url}/withdrawal", json={"reason": "Done"}, headers=bearer(anna))
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json()["stage"] == "withdrawn"

        stop(dev, times=2)


@pytest.mark.timeout(2 * START_WITHIN + 4 * STOP_WITHIN + 60)
async def test_dev_killed_takes_its_servers_along_and_starts_again(dev_dir: Path) -> None:
    """A `grantflow dev` killed outright (SIGKILL, as the OOM killer would) cannot stop its
    servers itself: they follow it on their own, and the next start finds the data intact."""
    await asyncio.to_thread(killed_takes_its_servers_along_and_starts_again, dev_dir)


def killed_takes_its_servers_along_and_starts_again(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    home = Path(env["GRANTFLOW_HOME"])

    with running(tmp_path, env, "killed") as dev, httpx.Client(base_url=dev.api, timeout=30) as api:
        admin = demo_tokens(home)["Admin"]["token"]
        created = api.post("/v1/programmes", json=programme_body(), headers=bearer(admin))
        assert created.status_code == 201, created.text
        programme = created.json()
        dev.process.kill()  # grantflow alone, not its process group
        dev.process.wait(STOP_WITHIN)
        deadline = time.monotonic() + STOP_WITHIN
        while dev.survivors() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dev.survivors() == {}, "servers outlived a killed `grantflow dev`"
        # Its runtime.json is left behind; a second terminal must not be sent to dead ports.
        assert (home / "runtime.json").exists()
        orphan = subprocess.run(
            [GRANTFLOW, "users", "create", "--role", "admin", "--name", "Late Admin"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert orphan.returncode != 0
        assert "no running grantflow stack" in orphan.stderr + orphan.stdout

    with (
        running(tmp_path, env, "after-kill") as dev,
        httpx.Client(base_url=dev.api, timeout=30) as api,
    ):
        again = api.get(f"/v1/programmes/{programme['id']}", headers=bearer(admin))
        assert again.status_code == 200, again.text
        assert again.json()["name"] == programme["name"]
        stop(dev, times=1)


# --- every way out stops the servers ---------------------------------------------------------


def wait_exit(dev: Dev) -> int:
    """Its exit code, watching its children until then (for `survivors`)."""
    deadline = time.monotonic() + START_WITHIN
    while dev.process.poll() is None and time.monotonic() < deadline:
        dev.children |= descendants(dev.process.pid)
        time.sleep(0.05)
    return dev.process.wait(STOP_WITHIN)


@pytest.mark.timeout(START_WITHIN + 2 * STOP_WITHIN + 30)
async def test_dev_told_to_stop_while_starting_stops_its_servers_first(dev_dir: Path) -> None:
    """SIGTERM before it serves (starting the servers, migrating): the servers, which run in
    sessions of their own, were left to their death-of-parent signal after it died at once."""
    await asyncio.to_thread(told_to_stop_while_starting, dev_dir)


def told_to_stop_while_starting(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    dev = Dev(tmp_path, env, "stopped-while-starting")
    try:
        postgres_log = dev.home / "postgres.log"
        deadline = time.monotonic() + START_WITHIN
        while "ready to accept connections" not in (
            postgres_log.read_text(errors="replace") if postgres_log.exists() else ""
        ):  # then Temporal starts, and the migrations run: seconds before it serves
            assert dev.process.poll() is None and time.monotonic() < deadline, dev.output()
            time.sleep(0.05)
        dev.children = descendants(dev.process.pid)
        os.kill(dev.process.pid, signal.SIGTERM)
        code = wait_exit(dev)
        assert code == 0, dev.output()
        assert dev.survivors() == {}
        log = dev.log.read_text(errors="replace")
        assert "stopped before serving" in log and "grantflow is running" not in log, log
        assert "received fast shutdown request" in postgres_log.read_text(errors="replace")
        assert not (dev.home / "runtime.json").exists()
    except BaseException:
        print(dev.output())
        raise
    finally:
        dev.kill()


@pytest.mark.timeout(START_WITHIN + 2 * STOP_WITHIN + 30)
async def test_a_second_ctrl_c_kills_the_servers_at_once(dev_dir: Path) -> None:
    await asyncio.to_thread(second_ctrl_c_kills_the_servers_at_once, dev_dir)


def second_ctrl_c_kills_the_servers_at_once(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    with running(tmp_path, env, "forced") as dev:
        os.killpg(dev.process.pid, signal.SIGINT)
        time.sleep(0.2)  # stopping in order: the API, the worker, then the servers
        os.killpg(dev.process.pid, signal.SIGINT)
        started = time.monotonic()
        code = dev.process.wait(STOP_WITHIN)
        assert code == 128 + signal.SIGINT, code
        assert time.monotonic() - started < 10
        assert dev.survivors() == {}
        assert "forced stop" in dev.log.read_text(errors="replace")
        assert not (dev.home / "runtime.json").exists()


@pytest.mark.timeout(START_WITHIN + 2 * STOP_WITHIN + 30)
async def test_a_worker_that_dies_is_told_and_stops_everything(dev_dir: Path) -> None:
    """The worker killed outright (the OOM killer): `grantflow dev` says so in one line, stops
    the API and the servers, and exits 1 rather than serve requests no worker answers."""
    await asyncio.to_thread(a_worker_that_dies_stops_everything, dev_dir)


def a_worker_that_dies_stops_everything(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    with running(tmp_path, env, "worker-died") as dev:
        worker = grantflow_children(dev)["worker"]
        os.kill(worker, signal.SIGKILL)
        code = dev.process.wait(STOP_WITHIN)
        assert code == 1, dev.output()
        assert dev.survivors() == {}
        last = dev.log.read_text(errors="replace").rstrip("\n").splitlines()[-1]
        assert last.startswith("`grantflow worker` was killed by SIGKILL: "), last
        assert last.endswith("; grantflow stopped everything"), last
        assert "received fast shutdown request" in (dev.home / "postgres.log").read_text()
        assert not (dev.home / "runtime.json").exists()


async def test_the_apis_port_in_use_is_told_before_any_server_starts(dev_dir: Path) -> None:
    await asyncio.to_thread(apis_port_in_use, dev_dir)


def apis_port_in_use(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["GRANTFLOW_API_PORT"])))
        taken.listen()
        done = subprocess.run(
            [str(GRANTFLOW), "dev"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    port = env["GRANTFLOW_API_PORT"]
    line = done.stderr.rstrip("\n").splitlines()[-1]
    assert line.startswith(f"port {port} (GRANTFLOW_API_PORT) is already in use by "), line
    assert not (Path(env["GRANTFLOW_HOME"]) / "postgres").exists()
