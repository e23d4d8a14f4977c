"""Benchmark the release path: proposals signed with `proposal_sign`, released by a real `twinops release-agent`.

Run: `twinops bench release --json [--quick]` (Django set up by the CLI). Works in the scratch database
`twinops_bench_release` on the same PostgreSQL server (dropped and re-created each run); the dev and test databases
are never touched. The simulated heat train's PLC (plantsim, SignAndEncrypt, pinned certificate, writer account) runs
in this process on a thread of its own and records every setpoint write it accepts; the agent is a child process
(`twinops release-agent`), killed with SIGKILL mid-write `kills` times and restarted. A tiny twin is trained and
promoted (seconds), and the agent trusts it anywhere (TWINOPS_RECOMMEND_MAX_OOD) on data ingested once at the start
(TWINOPS_STALE_PERIODS): what is measured is the release path, not the twin. Figures:
- approve_to_first_write_p95_ms: `proposal_sign` returned → the PLC accepted step 0 (the agent's poll, re-check,
  claim, write); the PLC's own clock, same machine. Target ≤ 1,000;
- write_readback_p95_ms: a step claimed → read back equal (claim committed, write, read-back), from the agent's
  rows; readback_only_p95_ms: write accepted → read back. Target ≤ 200;
- writes_without_signed_approval: written rows whose proposal lacks the approvals it needs over its current content
  hash (must be 0); double_writes_after_agent_kill: setpoints the PLC accepted beyond one per (release, step, tag)
  (must be 0), plc_writes_match_plans: the PLC's accepted writes are exactly the approved plans, in order;
- baselines in the same run on the same PLC: held_session_write_p95_ms (one write, no read-back, on a held
  session), held_session_write_readback_p95_ms (write + one read: the floor of the agent's path without its
  database), fresh_connection_write_readback_p95_ms (discover, pin, SignAndEncrypt handshake, login, write, read,
  close: what a writer without a held session would pay per write).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

BENCH_DB = "twinops_bench_release"
LINE = "heat-train"
WRITER, WRITER_PASSWORD = "operator", "bench-release-operator"
ENGINEER, ENGINEER_PASSWORD = "bench-engineer", "a-long-bench-password-1"
AGENT_SPEED = 40.0  # plant seconds per wall second for the agent's pacing: a 10 s step every 0.25 s
TINY: dict[str, Any] = {
    "window": 8,
    "nz": 4,
    "hidden": 16,
    "depth": 1,
    "members": 3,
    "horizon": 10,
    "epochs": 2,
    "steps_per_epoch": 10,
    "batch_size": 16,
    "val_windows": 32,
    "eval_starts": 100,
    "min_train_samples": 100,
}
T = TypeVar("T")


class PlcThread:
    """The simulated PLC served from an event loop on a thread of its own, recording each setpoint write it accepts."""

    def __init__(self, cert_dir: Path, client_cert: Path) -> None:
        from plantsim.plc import PlcConfig, PlcServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-plc", daemon=True)
        self.thread.start()
        config = PlcConfig(
            line_id=LINE,
            operator_user=WRITER,
            operator_password=WRITER_PASSWORD,
            port=0,
            cert_dir=cert_dir,
            trusted_client_certs=(client_cert,),  # the agent's (and the baselines') certificate, nobody else's
            speed=AGENT_SPEED,
            heartbeat_timeout_s=600.0,
            seed=3,
        )
        self.plc = PlcServer(config)
        self.accepted: list[tuple[str, float, float]] = []  # (tag, value, time.time()) per accepted MV write
        self.kill_at: tuple[int, float] | None = None  # (pid, F_feed value): SIGKILL that pid when the value arrives
        self.call(self.plc.start())
        self._record()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        """Run a coroutine on the PLC's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def _record(self) -> None:
        from asyncua import ua

        plc = self.plc
        guard = plc._guard_write
        names = {ua.NodeId.from_string(plc.node_id(t.name)): t.name for t in plc.line.tags if t.role == "MV"}

        async def recording(user: Any, item: ua.WriteValue) -> Any:
            refused = await guard(user, item)
            if refused is None and item.NodeId in names:
                tag, value = names[item.NodeId], float(item.Value.Value.Value)
                if self.kill_at is not None and tag == "F_feed" and value == self.kill_at[1]:
                    pid, self.kill_at = self.kill_at[0], None
                    os.kill(pid, signal.SIGKILL)  # the agent dies as the PLC takes the step: written, unconfirmed
                    with contextlib.suppress(ChildProcessError):  # reaped already by the bench's poll(): dead too
                        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead before the write applies
                self.accepted.append((tag, value, time.time()))
            return refused

        plc._server.iserver.attribute_service._guard = recording  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop the PLC and its loop."""
        self.call(self.plc.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _setup(engineer_password: str) -> Any:
    """Onboard the heat train (advisory) with a tiny promoted twin and an engineer; return the line."""
    import torch
    import yaml

    from plantsim import build_simulator
    from plantsim.history import generate_history
    from plantsim.spec import line_spec
    from twinops.accounts.services import user_create
    from twinops.lines.services import line_mode_set
    from twinops.modeling import services
    from twinops.modeling.datasets import LineRecord
    from twinops.modeling.services import twin_config
    from twinops.onboarding.services import line_onboard
    from twins import TwinDataset, train_and_evaluate

    torch.set_num_threads(1)
    text = yaml.safe_dump(line_spec(build_simulator(LINE).line), sort_keys=False)
    line = line_onboard(text=text, filename="heat-train.yaml", actor="system:bench").line
    line = line_mode_set(line=line, mode="advisory", actor="system:bench", reason="benchmark of releases")
    h = generate_history(LINE, days=0.15, start=datetime(2026, 1, 5, tzinfo=UTC), seed=1)
    roles = {t.name: t.role for t in h.line.tags}
    idx = {r: [i for i, c in enumerate(h.columns) if roles[c] == r] for r in ("CV", "MV", "DV")}
    v = np.nan_to_num(h.values)
    dataset = TwinDataset.from_arrays(
        cv=v[:, idx["CV"]],
        mv=v[:, idx["MV"]],
        dv=v[:, idx["DV"]],
        cv_names=[h.columns[i] for i in idx["CV"]],
        mv_names=[h.columns[i] for i in idx["MV"]],
        dv_names=[h.columns[i] for i in idx["DV"]],
        sample_period_s=h.line.sample_period_s,
    )
    outcome = train_and_evaluate(dataset, twin_config(TINY))
    report = dataclasses.replace(outcome.report, promotable=True, reason="forced promotable in the benchmark")
    job = services.training_job_create(line=line, actor="system:bench", config_overrides=TINY, enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    record = LineRecord(dataset=dataset, timestamps=h.timestamps)
    version = services.twin_version_register(
        job=job, record=record, outcome=dataclasses.replace(outcome, report=report)
    )
    services.twin_promote(version=version, actor="system:bench", reason="benchmark")
    user_create(username=ENGINEER, role="engineer", password=engineer_password, actor="system:bench", validate=False)
    return line


def _fresh_data(line: Any, plc: Any) -> None:
    """Store ten sample periods of every tag ending now, as the collector would."""
    from twinops.telemetry.batch import RawBatch
    from twinops.telemetry.services import samples_ingest

    now = datetime.now(UTC)
    values = {**plc.simulator.last.values, **plc.simulator.setpoints}
    names = {t.name for t in plc.line.tags}
    records = [
        (name, now - timedelta(seconds=line.sample_period_s * k), float(value))
        for k in range(10)
        for name, value in values.items()
        if name in names
    ]
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="opcua", actor="system:bench")


def _pending(line: Any, start: dict[str, float], plan: dict[str, list[float]], i: int) -> Any:
    """Store a pending proposal of `plan` from `start` as the optimizer would (no solve: the plan is given)."""
    from twinops.modeling.selectors import twin_promoted
    from twinops.recommendations.models import Recommendation

    now = datetime.now(UTC)
    return Recommendation.objects.create(
        line=line,
        slot=now.replace(microsecond=0) - timedelta(hours=1) + timedelta(seconds=i),
        status=Recommendation.Status.PENDING,
        created_at=now,
        created_by_label="system:bench",
        expires_at=now + timedelta(minutes=15),
        twin_version=twin_promoted(line=line),
        spec_version=line.current_spec,
        inputs={"current_mv": dict(start)},
        result={"status": "optimal", "mv_plan": plan, "sample_period_s": float(line.sample_period_s)},
    )


def _agent_start(plc: Any, work: Path) -> subprocess.Popen[bytes]:
    """Start `twinops release-agent` on the scratch database (its output appended to work/agent.log)."""
    from urllib.parse import urlparse

    from django.db import connection

    url = os.environ.get("DATABASE_OWNER_URL") or os.environ["DATABASE_URL"]  # the scratch database's owner
    db = urlparse(url)._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "twinops.config.settings",
        "DATABASE_URL": db,
        "TWINOPS_OPCUA_WRITE_PASSWORD": WRITER_PASSWORD,
        "TWINOPS_RECOMMEND_MAX_OOD": "1e9",
        "TWINOPS_STALE_PERIODS": "100000",
    }
    command = [
        *[sys.executable, "-m", "twinops", "release-agent", LINE, "--url", plc.endpoint_url],
        *["--fingerprint", str(plc.certificate_fingerprint), "--cert-dir", str(work / "client")],
        *["--username", WRITER, "--speed", str(AGENT_SPEED)],
    ]
    with (work / "agent.log").open("ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(check: Any, timeout_s: float, what: str, agent: subprocess.Popen[bytes] | None = None) -> None:
    from django.db import close_old_connections

    deadline = time.monotonic() + timeout_s
    while not check():
        if agent is not None and agent.poll() is not None and agent.returncode != -signal.SIGKILL:
            raise RuntimeError(f"the release agent exited ({agent.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
        close_old_connections()


def _plan(start: dict[str, float], steps: int, sign: float) -> dict[str, list[float]]:
    """Move F_feed by 0.3 per step (inside its ramp), up or down, holding the other MVs."""
    return {n: [v + (sign * 0.3 * (k + 1) if n == "F_feed" else 0.0) for k in range(steps)] for n, v in start.items()}


async def _setpoints(plc: Any) -> dict[str, float]:
    """Return the setpoint each MV node of the PLC holds now."""
    server = plc._server
    return {
        t.name: float(await server.get_node(plc.node_id(t.name)).read_value()) for t in plc.line.tags if t.role == "MV"
    }


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _unsigned_writes() -> int:
    """Count written setpoints whose proposal lacks the approvals it needs over its current content hash."""
    from twinops.recommendations.models import Signature
    from twinops.recommendations.selectors import proposal_content_sha256, signatures_needed
    from twinops.releases.models import ReleaseWrite

    bad = 0
    for w in ReleaseWrite.objects.select_related("release__recommendation__line").exclude(written_at=None):
        rec = w.release.recommendation
        scale = float((rec.approved_plan or {}).get("scale", 1.0))
        sha = proposal_content_sha256(rec, scale=scale)
        approvals = {
            s.user_id
            for s in rec.signatures.all()
            if s.meaning == Signature.Meaning.APPROVED and s.content_sha256 == sha
        }
        signed = rec.status == "approved" and (rec.approved_plan or {}).get("content_sha256") == sha
        bad += not (signed and len(approvals) >= signatures_needed(rec, scale=scale))
    return bad


async def _baselines(plc: Any, cert_dir: Path, n: int) -> dict[str, float | None]:
    from twinops.opcua.client import connect_pinned, read_values, write_values

    node = plc.node_id("F_feed")
    value = float(plc.simulator.setpoints["F_feed"])  # the setpoint it holds: the plant does not move
    pinned = dict(
        fingerprint=plc.certificate_fingerprint,
        client_cert_dir=cert_dir,
        username=WRITER,
        password=WRITER_PASSWORD,
    )
    held_write, held_rw, fresh_rw = [], [], []
    async with connect_pinned(plc.endpoint_url, **pinned) as client:
        await write_values(client, {node: value})  # warm: data type read, channel keys in use
        for _ in range(n):
            t0 = time.perf_counter()
            await write_values(client, {node: value})
            held_write.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            await write_values(client, {node: value})
            await read_values(client, [node])
            held_rw.append((time.perf_counter() - t0) * 1e3)
    for _ in range(max(3, n // 3)):
        t0 = time.perf_counter()
        async with connect_pinned(plc.endpoint_url, **pinned) as client:
            await write_values(client, {node: value})
            await read_values(client, [node])
        fresh_rw.append((time.perf_counter() - t0) * 1e3)
    return {
        "held_session_write_p95_ms": _p(held_write, 95),
        "held_session_write_readback_p95_ms": _p(held_rw, 95),
        "fresh_connection_write_readback_p95_ms": _p(fresh_rw, 95),
    }


def _drop(name: str) -> None:
    import psycopg
    from django.db import connections

    conn = connections["default"]
    params = {
        k: v
        for k, v in conn.get_connection_params().items()
        if k not in {"cursor_factory", "context", "server_side_binding", "prepare_threshold"}
    }
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(*, quick: bool = False) -> dict[str, Any]:
    """Sign and release 30 proposals of 3 steps (quick: 6 of 2), killing the agent mid-write twice (quick: once)."""
    from twinops.config.database_roles import database_owner

    proposals, steps = (6, 2) if quick else (30, 3)
    kill_at = {proposals // 2} if quick else {proposals // 3, 2 * proposals // 3}  # proposal index: killed at step 1
    began = time.perf_counter()
    with database_owner():  # the role that may create, drop and migrate databases (config/database_roles.py)
        _drop(BENCH_DB)
        return _run(proposals, steps, kill_at, quick, began)


def _run(proposals: int, steps: int, kill_at: set[int], quick: bool, began: float) -> dict[str, Any]:
    from django.db import close_old_connections

    from bench.ingest import scratch_database
    from twinops.lines.models import Line
    from twinops.recommendations.services import proposal_sign
    from twinops.releases.models import Release, ReleaseWrite

    with scratch_database(BENCH_DB), tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        work = Path(tmp)
        line = _setup(ENGINEER_PASSWORD)
        from django.contrib.auth import get_user_model

        engineer = get_user_model().objects.get(username=ENGINEER)
        from twinops.opcua.certs import client_certificate_ensure

        plc_thread = PlcThread(work / "server-certs", client_certificate_ensure(work / "client").cert)
        plc = plc_thread.plc
        agent = _agent_start(plc, work)
        first_write_ms: list[float] = []
        restarts = 0
        try:
            _fresh_data(line, plc)
            _wait(lambda: plc._heartbeat_value is not None, 120, "the agent's first heartbeat", agent)
            for i in range(proposals):
                start = plc_thread.call(_setpoints(plc))  # what the PLC holds (the simulator takes it at its next tick)
                plan = _plan(start, steps, 1.0 if i % 2 == 0 else -1.0)
                rec = _pending(line, start, plan, i)
                if i in kill_at:
                    plc_thread.kill_at = (agent.pid, plan["F_feed"][1])
                seen = len(plc_thread.accepted)
                proposal_sign(
                    recommendation_id=rec.pk,
                    actor=engineer,
                    password=ENGINEER_PASSWORD,
                    decision="approve",
                    reason="benchmark",
                    client="bench",
                )
                signed = time.time()
                _wait(lambda n=seen: len(plc_thread.accepted) > n, 60, f"proposal {i}'s first write", agent)
                first_write_ms.append((plc_thread.accepted[seen][2] - signed) * 1e3)
                if i in kill_at:
                    _wait(lambda a=agent: a.poll() is not None, 60, "the agent's death")
                    agent = _agent_start(plc, work)  # the restart settles the unconfirmed step by reading it back
                    restarts += 1
                _wait(
                    lambda r=rec: Release.objects.filter(recommendation=r).exclude(status="running").exists(),
                    90,
                    f"proposal {i}'s release to end",
                    agent,
                )
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                agent.wait(60)
        close_old_connections()
        releases = list(Release.objects.filter(line=Line.objects.get(key=LINE)).order_by("id"))
        rows = list(ReleaseWrite.objects.filter(release__line__key=LINE).order_by("release_id", "step", "tag"))
        written = [w for w in rows if w.status == "verified"]
        expected = [w.value for w in sorted(written, key=lambda w: (w.release_id, w.step)) if w.tag == "F_feed"]
        plc_f_feed = [v for t, v, _ in plc_thread.accepted if t == "F_feed"]
        sent = [w for w in written if w.tag == "F_feed" and w.written_at]  # not the steps settled after a restart
        claim_to_read = [(w.read_at - w.claimed_at).total_seconds() * 1e3 for w in sent]
        double_writes = len(plc_thread.accepted) - len(written)  # before the baselines write too
        readback = [
            (w.read_at - w.written_at).total_seconds() * 1e3 for w in written if w.written_at and w.tag == "F_feed"
        ]
        baselines = plc_thread.call(_baselines(plc, work / "client", 30 if not quick else 6))
        plc_thread.close()
        out: dict[str, Any] = {
            "quick": quick,
            "proposals": proposals,
            "steps_per_proposal": steps,
            "releases_finished": sum(r.status == "finished" for r in releases),
            "releases_not_finished": {
                r.recommendation_id: f"{r.status}: {r.reason}" for r in releases if r.status != "finished"
            },
            "approve_to_first_write_p50_ms": _p(first_write_ms, 50),
            "approve_to_first_write_p95_ms": _p(first_write_ms, 95),
            "write_readback_p50_ms": _p(claim_to_read, 50),
            "write_readback_p95_ms": _p(claim_to_read, 95),
            "readback_only_p95_ms": _p(readback, 95),
            "writes_recorded": len(rows),
            "writes_without_signed_approval": _unsigned_writes(),
            "agent_kills": restarts,
            "double_writes_after_agent_kill": double_writes,
            "plc_writes_match_plans": plc_f_feed == expected,
            **baselines,
            "targets": {"approve_to_first_write_p95_ms": 1000, "write_readback_p95_ms": 200},
            "run_s": round(time.perf_counter() - began, 1),
        }
    return out
