"""A real Celery worker killed with SIGKILL mid-training: the job is re-run once and registers exactly one version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

from twinops.modeling import services, tasks
from twinops.modeling.models import TrainingJob, TwinVersion

STALE_S = 3.0  # heartbeat age after which a running job's worker is presumed dead (production: minutes)
BROKER_DB = 9  # a Redis database of its own: other test runs' queued tasks never reach these workers, nor ours theirs


def _wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")


def _test_database_url() -> str:
    from django.db import connection

    parts = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def train_workers(tmp_path: Path) -> Iterator[tuple[Callable[[], subprocess.Popen[bytes]], list[Path]]]:
    """Start real `celery worker -Q train --pool solo` subprocesses on the test database and a private broker db."""
    from twinops.config.celery import app

    broker = app.conf.broker_url
    private = f"{broker}{'&' if '?' in broker else '?'}virtual_host={BROKER_DB}"
    _switch_broker(app, private)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("train")  # leftovers of an earlier, interrupted run
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": private,
        "TWINOPS_TRAIN_STALE_AFTER_S": str(STALE_S),
        "OMP_NUM_THREADS": "1",
        "DJANGO_SETTINGS_MODULE": "twinops.config.settings",
    }
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(procs) + 1}.log"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "twinops.config.celery",
            "worker",
            "-Q",
            "train",
            "--pool",
            "solo",
            "-n",
            f"modeling-test-{os.getpid()}-{len(procs) + 1}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        logs.append(log)
        return procs[-1]

    try:
        yield start, logs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        app.pool.force_close_all()  # the private database's connections only
        _switch_broker(app, broker)
        _close_other_sessions()


def _switch_broker(app: Any, url: str) -> None:
    """Point the app's producers at another broker URL, leaving the other URL's pooled connections open for reuse."""
    app.conf.broker_url = url
    # What Celery itself resets after a fork: the cached pools then follow the new URL (kombu keys them by URL).
    app._pool = None
    app.amqp._producer_pool = None


def _close_other_sessions() -> None:
    """End the killed workers' database sessions, which would keep the test database from being flushed or dropped."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )


@pytest.mark.slow  # real Celery workers, one killed mid-training
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_training_is_rerun_once_and_registers_exactly_one_version(
    line: Any, ingest: Any, tanks: Any, tiny: dict[str, Any], settings: Any, train_workers: Any
) -> None:
    start_worker, logs = train_workers
    settings.TWINOPS_TRAIN_STALE_AFTER_S = STALE_S
    ingest(line, tanks(1200))
    config = {**tiny, "epochs": 40, "steps_per_epoch": 10}  # long enough to be killed in the middle
    job = services.training_job_create(line=line, actor="system:test", config_overrides=config)  # sent on commit

    def job_now() -> TrainingJob:
        return TrainingJob.objects.get(pk=job.pk)

    first = start_worker()
    _wait_for(lambda: job_now().epoch >= 2, timeout_s=120, what="the first worker's progress", logs=logs)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    killed = job_now()
    assert (killed.status, killed.attempts) == ("running", 1) and 2 <= killed.epoch < 40

    time.sleep(STALE_S + 0.5)  # the dead worker's heartbeat goes stale
    assert tasks.requeue_stale_jobs() == [job.pk]  # what beat runs every minute
    start_worker()
    _wait_for(lambda: not job_now().active, timeout_s=150, what="the second worker to finish", logs=logs)

    done = job_now()
    assert (done.status, done.attempts, done.epoch) == ("done", 2, 40), done.message
    assert TwinVersion.objects.filter(line=line).count() == 1
    assert TwinVersion.objects.get(line=line).job_id == job.pk
