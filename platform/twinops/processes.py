"""Run the platform's long-lived processes (web, workers, PLCs, collectors) side by side and stop them in order."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings

from twinops.config.embedded import data_home

QUEUES = ",".join(settings.TWINOPS_QUEUES)

Procs = list[tuple[str, subprocess.Popen[bytes]]]


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


def start(name: str, cmd: list[str], env: dict[str, str], procs: Procs) -> subprocess.Popen[bytes]:
    """Start a child in its own session, its output appended to `logs/<name>.log`.

    Its own session: Ctrl-C reaches only us, and we stop the children in order.
    """
    with open(log_dir() / f"{name.replace(' ', '-')}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    procs.append((name, proc))
    return proc


def check_alive(procs: Procs) -> None:
    """Raise if any child has stopped."""
    for name, p in procs:
        if p.poll() is not None:
            raise ProcessDied(f"{name} stopped unexpectedly (exit code {p.returncode})")


def stop_all(procs: Procs, grace_s: float = 20.0) -> None:
    """Stop children newest first, each before the next (SIGTERM: Celery's warm shutdown), killing laggards.

    Newest first: collectors close their sessions before the PLCs they talk to go away.
    """
    for _, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


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
    """Start the web server, a Celery worker for every queue and the beat scheduler; return the URL."""
    start("web", twinops_cmd("runserver", "--noreload", f"{host}:{port}"), env, procs)
    if worker:
        start(
            "worker",
            celery_cmd("worker", "-Q", QUEUES, "-c", str(concurrency), "-n", "twinops@%h", "--loglevel", "WARNING"),
            env,
            procs,
        )
    if beat:
        start("beat", celery_cmd("beat", "--schedule", beat_schedule, "--loglevel", "WARNING"), env, procs)
    url = f"http://{host}:{port}/"
    wait_http(url + "health/", procs)
    return url


def supervise(procs: Procs) -> None:
    """Block until Ctrl-C or until a child dies."""
    while True:
        check_alive(procs)
        time.sleep(0.5)
