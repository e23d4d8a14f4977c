"""Read the process table from /proc: who descends from whom, who is in which process group, who is still alive."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    started: int  # clock ticks after boot: tells a process from a later one that reuses its pid
    cmdline: str


def proc_table() -> dict[int, Proc]:
    """Return every live (not zombie) process by pid."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            head, tail = Path(entry.path, "stat").read_text().rsplit(")", 1)
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = tail.split()  # state ppid pgrp session tty tpgid flags minflt … starttime (field 22 of stat)
        if fields[0] == "Z":
            continue
        pid = int(entry.name)
        table[pid] = Proc(pid, int(fields[1]), int(fields[2]), int(fields[19]), cmdline.strip())
    return table


def descendants(root: int, table: dict[int, Proc]) -> set[Proc]:
    """Return every process below `root` in the parent tree."""
    found: set[Proc] = set()
    frontier = {root}
    while frontier:
        children = {p for p in table.values() if p.ppid in frontier and p not in found}
        found |= children
        frontier = {p.pid for p in children}
    return found


def still_alive(procs: set[Proc]) -> set[Proc]:
    """Return those of `procs` still running (same pid and start time, not a zombie)."""
    table = proc_table()
    return {p for p in procs if table.get(p.pid) is not None and table[p.pid].started == p.started}


def wait_all_gone(procs: set[Proc], timeout_s: float) -> set[Proc]:
    """Wait until none of `procs` runs; return those still running at the timeout."""
    deadline = time.monotonic() + timeout_s
    left = still_alive(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = still_alive(left)
    return left
