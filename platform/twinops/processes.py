"""Run the platform's long-lived processes (web, workers, PLCs, collectors) side by side and stop them in order.

Stopping cleanly, whoever stops us:

- SIGTERM and SIGHUP (a service manager, `docker stop`, a closing terminal) stop the supervisor like Ctrl-C
  (`stop_on_signals`): the children stop newest first, then the embedded servers.
- Each child runs in a process group of its own; a child that outlives its grace is killed with its whole group,
  so a Celery worker's pool processes go with it.
- Nothing outlives the supervisor, not even after `kill -9`. Each child asks the kernel for SIGTERM when the
  supervisor dies (Linux's PR_SET_PDEATHSIG), and a watchdog process, started with the first child, reads the
  children's process groups from a pipe: when the pipe closes (the supervisor is gone, however it ended) it stops
  every group still alive (SIGKILL after the grace) and releases the supervisor's hold on the embedded PostgreSQL and
  Redis, which then stop unless another live process holds them. PDEATHSIG alone would not do: it reaches only
  direct children, not a worker's pool, and the embedded servers are daemons, not children.

A child that dies on its own (`kill -9`, out of memory, a native crash, its database gone for a while) is restarted by
`keep_alive`, with what its group left behind killed first and a back-off between restarts (RESTART_FIRST_S doubling
to RESTART_MAX_S, reset once it has run RESTART_RESET_S). It is never given up on: each death and restart is said on
the supervisor's output and in the child's log. Giving up would stop the whole platform for one child, and an outage
of PostgreSQL longer than a few restarts (which children that need it at start-up cannot outlive) would then stop
everything for good.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from django.conf import settings

from twinops.config.embedded import data_home, embedded_release

GRACE_S = 20.0  # how long a child may take to stop after SIGTERM before its group is killed
# Celery workers, one per queue group: a history import never waits behind twin training. (name, queues)
WORKER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("worker", ("ingest", "optimize", "default")),
    ("worker-train", ("train",)),  # long and heavy; one job at a time; GPU nodes run only this queue
)

RESTART_FIRST_S = 1.0  # wait before the first restart of a child that died
RESTART_MAX_S = 30.0  # the back-off doubles up to this
RESTART_RESET_S = 60.0  # a child that ran this long before dying starts the back-off over

Procs = list[tuple[str, subprocess.Popen[bytes]]]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_watchdog: list[subprocess.Popen[bytes]] = []  # this process's watchdog, started with its first child


@dataclass
class _Launch:
    """How a child was started, and its recent deaths: what a restart needs."""

    cmd: list[str]
    env: dict[str, str]
    started_at: float  # monotonic
    deaths: int = 0  # times it died since the supervisor started it
    backoff_s: float = RESTART_FIRST_S
    restart_at: float | None = None  # monotonic time of the restart that is due (None: none pending)


_launches: dict[int, _Launch] = {}  # child pid -> how it was started


class ProcessDied(RuntimeError):
    """A child process stopped on its own."""


def celery_cmd(*args: str) -> list[str]:
    """Return the command line that runs Celery for the TwinOps app."""
    return [sys.executable, "-m", "celery", "-A", "twinops.config.celery", *args]


def twinops_cmd(*args: str) -> list[str]:
    """Return the command line that runs a `twinops` command in a child process."""
    return [sys.executable, "-m", "twinops", *args]


def log_dir() -> Path:
    """Return the directory holding the children's logs (`<TWINOPS_HOME>/logs`)."""
    path = data_home() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP stop the supervisor like Ctrl-C does (KeyboardInterrupt, once), and Ctrl-C stop it.

    SIGINT is handled explicitly: a process inherits an ignored SIGINT from a shell script that started it in the
    background (`twinops demo &`), and Python then installs no KeyboardInterrupt for it; a SIGINT sent to such a
    supervisor did nothing, and a test run started that way left a whole demo running.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second one must not interrupt the orderly stop
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def start(name: str, cmd: list[str], env: dict[str, str], procs: Procs) -> subprocess.Popen[bytes]:
    """Start a child in its own session and process group, its output appended to `logs/<name>.log`.

    Its own session: Ctrl-C and a closing terminal reach only us, and we stop the children in order.
    """
    with open(log_dir() / f"{name.replace(' ', '-')}.log", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env={**env, "PYTHONUNBUFFERED": "1"},  # its log is written as it happens, not when it exits
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    procs.append((name, proc))
    _launches[proc.pid] = _Launch(cmd=cmd, env=env, started_at=time.monotonic())
    _watchdog_tell(proc.pid)
    return proc


def keep_alive(procs: Procs, *, now: float | None = None) -> list[str]:
    """Restart each child that died on its own, after its back-off; return what was restarted (lines to print).

    Raises ProcessDied for a child that was not started by `start` (nothing to restart it with).
    """
    now = time.monotonic() if now is None else now
    said = []
    for i, (name, p) in enumerate(procs):
        if p.poll() is None:
            continue
        launch = _launches.get(p.pid)
        if launch is None:
            raise ProcessDied(f"{name} stopped unexpectedly (exit code {p.returncode})")
        if launch.restart_at is None:  # first sight of this death
            group_kill(p.pid)  # what the child left in its group (a Celery worker's pool) goes with it
            if now - launch.started_at >= RESTART_RESET_S:
                launch.backoff_s = RESTART_FIRST_S
            launch.deaths += 1
            launch.restart_at = now + launch.backoff_s
            log = log_dir() / f"{name.replace(' ', '-')}.log"
            said.append(
                f"{name} stopped (exit code {p.returncode}, {launch.deaths} times so far); "
                f"restarting in {launch.backoff_s:.0f} s (see {log})"
            )
            continue
        if now < launch.restart_at:
            continue
        _launches.pop(p.pid, None)
        with open(log_dir() / f"{name.replace(' ', '-')}.log", "ab") as log:
            log.write(f"--- restarted by the supervisor after exit code {p.returncode} ---\n".encode())
        new = start(name, launch.cmd, launch.env, [])
        procs[i] = (name, new)  # in its place: stop_all stops newest first, in start order
        _launches[new.pid] = _Launch(
            cmd=launch.cmd,
            env=launch.env,
            started_at=now,
            deaths=launch.deaths,
            backoff_s=min(RESTART_MAX_S, launch.backoff_s * 2),
        )
        said.append(f"{name} restarted (pid {new.pid})")
    return said


def check_alive(procs: Procs) -> None:
    """Raise if any child has stopped."""
    for name, p in procs:
        if p.poll() is not None:
            raise ProcessDied(f"{name} stopped unexpectedly (exit code {p.returncode})")


def stop_all(procs: Procs, grace_s: float = GRACE_S) -> None:
    """Stop children newest first, each before the next (SIGTERM: Celery's warm shutdown), then what is left of its group.

    Newest first: collectors close their sessions before the PLCs they talk to go away. A child still running after
    the grace is killed with its process group, and so is anything its group left behind.
    """
    for _, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=grace_s)
        group_kill(p.pid)
        p.wait()


def group_members(pgid: int) -> list[int]:
    """Return the live (not zombie) processes of a process group, read from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:  # fields: state, ppid, pgrp, …
            members.append(int(entry.name))
    return members


def group_kill(pgid: int) -> None:
    """Kill every process left in a process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def groups_stop(pgids: list[int], grace_s: float = GRACE_S) -> None:
    """Stop process groups that are not our children: SIGTERM to each leader, SIGKILL to each group after the grace."""
    alive = [g for g in pgids if group_members(g)]
    for pgid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pgid, signal.SIGTERM)  # the leader (pid == pgid); a pgid in use is never handed out as a pid
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [g for g in alive if group_members(g)]
    for pgid in alive:
        group_kill(pgid)


def wait_http(url: str, procs: Procs, timeout_s: float = 60.0) -> None:
    """Wait until a URL answers 200, failing early if a child dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_alive(procs)
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise ProcessDied(f"nothing answered at {url} within {timeout_s:.0f} s")


def web_worker_beat(
    *,
    host: str,
    port: int,
    worker: bool,
    beat: bool,
    concurrency: int,
    env: dict[str, str],
    procs: Procs,
    beat_schedule: str,
) -> str:
    """Start the web server, a Celery worker per queue group (WORKER_GROUPS) and the beat scheduler; return the URL.

    `concurrency` is the number of pool processes of the worker for ingest, optimize and default; the training
    worker trains one twin at a time.
    """
    start("web", web_cmd(host, port), env, procs)
    if worker:
        for name, queues in WORKER_GROUPS:
            slots = 1 if queues == ("train",) else concurrency
            cmd = celery_cmd("worker", "-Q", ",".join(queues), "-c", str(slots), "-n", f"{name}@%h")
            start(name, [*cmd, "--loglevel", "WARNING"], env, procs)
    if beat:
        start("beat", celery_cmd("beat", "--schedule", beat_schedule, "--loglevel", "WARNING"), env, procs)
    url = f"http://{host}:{port}/"
    if settings.PRODUCTION:  # plain http to 127.0.0.1 is redirected to https or refused by ALLOWED_HOSTS there
        wait_listening(host, port, procs)
    else:
        wait_http(url + "health/", procs)
    return url


def web_cmd(host: str, port: int) -> list[str]:
    """Return the web server's command line: gunicorn in production, Django's development server otherwise."""
    if not settings.PRODUCTION:
        return twinops_cmd("runserver", "--noreload", f"{host}:{port}")
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "twinops.config.wsgi:application",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(min(4, os.cpu_count() or 1)),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        # gunicorn believes X-Forwarded-Proto from these addresses only: the same trusted proxies as the platform
        "--forwarded-allow-ips",
        ",".join(settings.TRUSTED_PROXIES),
        "--access-logfile",
        "-",
        "--preload",  # the application loads before the port opens: a listening port is a serving one
        "--no-control-socket",  # gunicorn's control socket would be one path in $HOME for every instance
    ]


def wait_listening(host: str, port: int, procs: Procs, timeout_s: float = 60.0) -> None:
    """Wait until something accepts TCP connections on host:port, failing early if a child dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_alive(procs)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise ProcessDied(f"nothing listened on {host}:{port} within {timeout_s:.0f} s")


def exposure_warning(host: str) -> str | None:
    """Return a warning when a development server would listen beyond this machine (None: loopback or production)."""
    if settings.PRODUCTION:
        return None
    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may well resolve to a public address
    bar = "!" * 100
    return (
        f"{bar}\n"
        f"!! WARNING: listening on {host}, reachable from other machines, in DEVELOPMENT mode (TWINOPS_ENV is\n"
        "!! not 'production'): DEBUG is on, any Host header is accepted, and the demo accounts sign in with the\n"
        "!! passwords printed in the README. Use --host 127.0.0.1, or TWINOPS_ENV=production behind a TLS proxy.\n"
        f"{bar}"
    )


def all_queues() -> str:
    """Return every Celery queue, comma-separated (what one `twinops worker` serves by default)."""
    return ",".join(settings.TWINOPS_QUEUES)


def supervise(procs: Procs, say: Callable[[str], None] = print) -> None:
    """Block until Ctrl-C (or SIGTERM/SIGHUP after `stop_on_signals`), restarting children that die (`keep_alive`)."""
    while True:
        for line in keep_alive(procs):
            say(line)
        time.sleep(0.5)


# --- children die with the supervisor -------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """Return a pre-exec hook that has the kernel send the child SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None  # elsewhere the watchdog alone stops the children
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before fork: the hook runs between fork and exec

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _watchdog_tell(pgid: int) -> None:
    """Tell this process's watchdog about a child's process group, starting the watchdog first if needed."""
    if not _watchdog or _watchdog[0].poll() is not None:
        _watchdog[:] = []
        with open(log_dir() / "watchdog.log", "ab") as log:
            _watchdog.append(
                subprocess.Popen(
                    [sys.executable, "-m", "twinops.processes", str(os.getpid())],
                    stdin=subprocess.PIPE,  # its end of the pipe closes when we exit, however we exit
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # neither Ctrl-C nor a closing terminal reach it
                )
            )
    pipe = _watchdog[0].stdin
    assert pipe is not None
    pipe.write(f"{pgid}\n".encode())
    pipe.flush()


def watchdog_run(supervisor_pid: int) -> None:
    """Read process groups from stdin until the supervisor is gone; then stop them and release the embedded servers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pgids = [int(line) for line in sys.stdin.buffer]  # ends when the supervisor's end of the pipe closes
    groups_stop(pgids)
    embedded_release(supervisor_pid)


if __name__ == "__main__":
    watchdog_run(int(sys.argv[1]))
