"""The supervisor restarts a child killed with `kill -9` after a back-off that grows while it keeps dying."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

from tests.platform.proctable import Proc, proc_table, still_alive
from twinops import processes

WITH_HELPER = textwrap.dedent(
    """
    import os, time
    if os.fork() == 0:  # a helper in the same process group, like a Celery pool process
        while True:
            time.sleep(1)
    while True:
        time.sleep(1)
    """
)


def _group(pgid: int, size: int) -> set[Proc]:
    deadline, group = time.monotonic() + 20, set()
    while len(group) < size and time.monotonic() < deadline:
        group = {p for p in proc_table().values() if p.pgrp == pgid}
        time.sleep(0.1)
    return group


def test_a_child_killed_with_sigkill_is_restarted_after_its_back_off_and_its_leftovers_killed() -> None:
    procs: processes.Procs = []
    first = processes.start("crashy", [sys.executable, "-c", WITH_HELPER], dict(os.environ), procs)
    try:
        old_group = _group(first.pid, 2)
        assert len(old_group) == 2
        os.kill(first.pid, signal.SIGKILL)  # the child only: its helper stays behind, as a worker's pool would
        first.wait()

        said = processes.keep_alive(procs)
        log = processes.log_dir() / "crashy.log"
        assert said == [f"crashy stopped (exit code -9, 1 times so far); restarting in 1 s (see {log})"]
        deadline = time.monotonic() + 5
        while still_alive(old_group) and time.monotonic() < deadline:  # SIGKILL takes effect a moment later
            time.sleep(0.05)
        assert not still_alive(old_group), "what the dead child left in its process group should be killed"
        assert processes.keep_alive(procs) == []  # still inside the back-off: not yet restarted

        time.sleep(processes.RESTART_FIRST_S + 0.1)
        said = processes.keep_alive(procs)
        ((name, second),) = procs
        assert name == "crashy" and second.pid != first.pid and second.poll() is None
        assert said == [f"crashy restarted (pid {second.pid})"]
        assert "restarted by the supervisor after exit code -9" in log.read_text()
    finally:
        processes.stop_all(procs, grace_s=1.0)


def test_a_child_that_keeps_dying_is_restarted_ever_later_up_to_the_cap_and_never_given_up() -> None:
    procs: processes.Procs = []
    processes.start("doomed", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), procs)
    now, waits = time.monotonic(), []
    try:
        for _ in range(8):
            procs[0][1].wait()
            (said,) = processes.keep_alive(procs, now=now)  # its death: when it will be restarted
            waits.append(float(said.split("restarting in ")[1].split(" s")[0]))
            now += waits[-1]
            (said,) = processes.keep_alive(procs, now=now)
            assert said.startswith("doomed restarted (pid ")
        assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    finally:
        processes.stop_all(procs, grace_s=1.0)
