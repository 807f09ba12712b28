"""What can stop grantflow from starting, found before it starts and told in one line with its
fix: a port in use (and by what), a GRANTFLOW_HOME it cannot write, a TEMPORAL_ADDRESS or
DATABASE_URL where nobody answers, a second `grantflow dev` on the same GRANTFLOW_HOME."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

LOCK_FILE = "grantflow.lock"
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


class StartupError(RuntimeError):
    """grantflow cannot start; the message is one line: what is wrong and how to fix it."""


def port_user(port: int) -> str | None:
    """Which process listens on a local TCP port, as `name (pid N)`, when /proc tells (Linux,
    and a process this user may inspect); None otherwise."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f"{name} (pid {proc.name})"
    return None


def port_in_use(port: int, setting: str) -> str:
    """The line that says a port is taken, by what when known, and which setting moves it."""
    holder = port_user(port)
    by = f" by {holder}" if holder else ""
    return (
        f"port {port} ({setting}) is already in use{by}: stop it, or set {setting} to a free port"
    )


def require_writable_home(home: Path) -> None:
    """GRANTFLOW_HOME exists (or can be made) and this user can write in it."""
    user = _user()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"GRANTFLOW_HOME {home.resolve()} is not writable by {user} ({exc.strerror}): "
            "set GRANTFLOW_HOME to a directory you can write, or give that one to "
            f"{user} (chown)"
        ) from None


def require_answering(
    name: str, host: str | None, port: int | None, fix: str, within: float = 5.0
) -> None:
    """Someone answers at host:port within `within` s (a server still starting gets that long),
    or grantflow stops here, naming the setting and how to fix it."""
    if not host or not port:
        raise StartupError(f"{name} names no host and port: {fix}")
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, within)):
                return
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"{name} points at {host}:{port}, where nobody answers ({reason}): {fix}"
                ) from None
        time.sleep(0.25)


def require_servers(temporal_address: str | None, database_url: str | None) -> None:
    """The real servers the environment names answer (the embedded ones are started instead
    when it names none)."""
    if database_url and (address := _tcp_address(database_url)):
        require_answering(
            "DATABASE_URL",
            *address,
            "start that PostgreSQL or correct DATABASE_URL (unset, grantflow uses its own)",
        )
    if temporal_address:
        host, _, port = temporal_address.rpartition(":")
        require_answering(
            "TEMPORAL_ADDRESS",
            host.strip("[]") or None,
            int(port) if port.isdigit() else None,
            "start that Temporal server or correct TEMPORAL_ADDRESS (unset, grantflow uses "
            "its own)",
        )


def _tcp_address(database_url: str) -> tuple[str, int] | None:
    """The one host and port a URL names; None for what a TCP probe cannot try (a Unix
    socket, several hosts), which is left to the driver."""
    try:
        url = urlsplit(database_url)
        return (url.hostname, url.port or 5432) if url.hostname else None
    except ValueError:  # several hosts: "h1:5432,h2:5432" is no port
        return None


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """One `grantflow dev` per GRANTFLOW_HOME: a second one would take over the first one's
    servers (PostgreSQL's data directory, Temporal's file). The lock is the kernel's, so it is
    released however the holder ends, SIGKILL included."""
    path = home / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"another `grantflow dev` (pid {holder}) is running on GRANTFLOW_HOME "
                f"{home.resolve()}: use that one, stop it (Ctrl-C in its terminal), or set "
                "GRANTFLOW_HOME to another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
