"""`twinops up`: migrate, seed demo users, run web + Celery worker + beat until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from twinops.config.embedded import data_home
from twinops.core.services import demo_users_seed

QUEUES = ",".join(settings.TWINOPS_QUEUES)


def celery_cmd(*args: str) -> list[str]:
    """Return the command line that runs Celery for the TwinOps app."""
    return [sys.executable, "-m", "celery", "-A", "twinops.config.celery", *args]


class Command(BaseCommand):
    help = "Start the platform on this machine: database, migrations, web server, Celery worker and beat."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="do not start a Celery worker here")
        parser.add_argument("--no-beat", action="store_true", help="do not start the Celery beat scheduler")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args: Any, **opts: Any) -> None:
        self.stdout.write("Applying migrations…")
        call_command("migrate", interactive=False, verbosity=0)
        logins = [] if settings.PRODUCTION else demo_users_seed()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "twinops.config.settings"}
        url = f"http://{opts['host']}:{opts['port']}/"
        specs = [("web", [sys.executable, "-m", "twinops", "runserver", "--noreload", f"{opts['host']}:{opts['port']}"])]
        if not opts["no_worker"]:
            specs.append(("worker", celery_cmd("worker", "-Q", QUEUES, "-c", str(opts["concurrency"]),
                                               "-n", "twinops@%h", "--loglevel", "INFO")))
        if not opts["no_beat"]:
            specs.append(("beat", celery_cmd("beat", "--schedule", str(data_home() / "celerybeat-schedule"),
                                             "--loglevel", "INFO")))
        procs = run_all(specs, env)
        try:
            wait_http(url + "health/", procs)
            self.stdout.write(self.style.SUCCESS(f"\nTwinOps is running at {url}"))
            for role, username, password in logins:
                self.stdout.write(f"  {role:<9} login: {username} / {password}")
            self.stdout.write("Press Ctrl-C to stop.\n")
            while True:
                for name, p in procs:
                    if p.poll() is not None:
                        raise CommandError(f"{name} stopped unexpectedly (exit code {p.returncode})")
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            stop_all(procs)
        self.stdout.write("Stopped.")


def run_all(specs: list[tuple[str, list[str]]], env: dict[str, str]) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Start each process in its own session, so Ctrl-C reaches only us and we stop them in order."""
    return [(name, subprocess.Popen(cmd, env=env, start_new_session=True)) for name, cmd in specs]


def stop_all(procs: list[tuple[str, subprocess.Popen[bytes]]], grace_s: float = 20.0) -> None:
    """Ask each process to stop (SIGTERM: Celery's warm shutdown), then kill what is left after the grace time."""
    for _, p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for _, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_http(url: str, procs: list[tuple[str, subprocess.Popen[bytes]]], timeout_s: float = 60.0) -> None:
    """Wait until the web server answers its health check."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                raise CommandError(f"{name} failed to start (exit code {p.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise CommandError(f"the web server did not answer at {url} within {timeout_s:.0f} s")
