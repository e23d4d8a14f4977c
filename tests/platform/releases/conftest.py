"""A heat-train line onboarded from plantsim's spec, a tiny twin, fresh data, a simulated PLC, signed approvals."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from plantsim import build_simulator
from plantsim.plc import PlcConfig, PlcServer
from twinops.opcua.certs import client_certificate_ensure

LINE = "heat-train"
OPERATOR, PASSWORD = "operator", "release-test-operator"
SPEED = 20.0  # plant seconds per wall second: a 10 s step every 0.5 s
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


@pytest.fixture(scope="session")
def heat_twin() -> Any:
    """Train one tiny twin on a few simulated hours of the heat train (shared: it costs seconds)."""
    from plantsim.history import generate_history
    from twinops.modeling.datasets import LineRecord
    from twinops.modeling.services import twin_config
    from twins import TwinDataset, train_and_evaluate

    torch.set_num_threads(1)
    h = generate_history(LINE, days=0.15, start=datetime(2026, 1, 5, tzinfo=UTC), seed=1)
    roles = {t.name: t.role for t in h.line.tags}
    cols = {r: [i for i, c in enumerate(h.columns) if roles[c] == r] for r in ("CV", "MV", "DV")}
    names = {r: [h.columns[i] for i in idx] for r, idx in cols.items()}
    v = np.nan_to_num(h.values)
    dataset = TwinDataset.from_arrays(
        cv=v[:, cols["CV"]],
        mv=v[:, cols["MV"]],
        dv=v[:, cols["DV"]],
        cv_names=names["CV"],
        mv_names=names["MV"],
        dv_names=names["DV"],
        sample_period_s=h.line.sample_period_s,
    )
    return LineRecord(dataset=dataset, timestamps=h.timestamps), train_and_evaluate(dataset, twin_config(TINY))


@pytest.fixture(autouse=True)
def _release_settings(settings: Any) -> Iterator[None]:
    """Trust the tiny twin anywhere and keep data fresh for a test's length; forget cached twins between tests."""
    from twinops.recommendations.mpc_cache import caches_clear

    settings.TWINOPS_RECOMMEND_MAX_OOD = 1e9
    settings.TWINOPS_STALE_PERIODS = 30.0
    caches_clear()
    yield
    caches_clear()


@pytest.fixture
def release_line(db: None, heat_twin: Any) -> Any:
    """The heat train onboarded from plantsim's spec (with its plc block), in advisory mode, with a promoted twin."""
    from plantsim.spec import line_spec
    from twinops.lines.services import line_mode_set
    from twinops.modeling import services
    from twinops.onboarding.services import line_onboard

    text = yaml.safe_dump(line_spec(build_simulator(LINE).line), sort_keys=False)
    line = line_onboard(text=text, filename="heat-train.yaml", actor="system:test").line
    line = line_mode_set(line=line, mode="advisory", actor="system:test", reason="tests release proposals")
    record, outcome = heat_twin
    report = dataclasses.replace(outcome.report, promotable=True, reason="forced promotable in tests")
    job = services.training_job_create(line=line, actor="system:test", config_overrides=TINY, enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    version = services.twin_version_register(
        job=job, record=record, outcome=dataclasses.replace(outcome, report=report)
    )
    services.twin_promote(version=version, actor="system:test", reason="tests")
    return line


@pytest.fixture
def plc_config(tmp_path: Path) -> Callable[..., PlcConfig]:
    """Return a factory of heat-train PLC configs on a free port, trusting the agent's certificate (tmp_path/client)."""

    def make(**overrides: Any) -> PlcConfig:
        base: dict[str, Any] = dict(
            line_id=LINE,
            operator_user=OPERATOR,
            operator_password=PASSWORD,
            port=0,
            cert_dir=tmp_path / "server-certs",
            trusted_client_certs=(client_certificate_ensure(tmp_path / "client").cert,),
            speed=SPEED,
            tick_s=0.05,
            heartbeat_timeout_s=60.0,
            seed=3,
        )
        base.update(overrides)
        return PlcConfig(**base)

    return make


def fresh_data(line: Any, plc: PlcServer, *, rows: int = 10) -> None:
    """Store `rows` sample periods of every tag ending now (the PLC's current values), as the collector would."""
    from twinops.telemetry.batch import RawBatch
    from twinops.telemetry.services import samples_ingest

    now = datetime.now(UTC)
    sample = plc.simulator.last
    values = {**sample.values, **plc.simulator.setpoints}
    records = [
        (name, now - timedelta(seconds=line.sample_period_s * k), float(values[name]))
        for k in range(rows)
        for name in values
        if name in {t.name for t in plc.line.tags}
    ]
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="opcua", actor="system:test")


def approve(
    line: Any,
    start_mv: dict[str, float],
    plan: dict[str, list[float]],
    *,
    engineer: Any,
    ttl_s: float = 900.0,
    decided_at: datetime | None = None,
) -> Any:
    """Store an approved proposal of `plan` starting from `start_mv`, signed by `engineer` over its content hash."""
    from django.db import transaction

    with transaction.atomic():  # as proposal_sign does: the agent never sees an approval without its plan
        return _approve(line, start_mv, plan, engineer=engineer, ttl_s=ttl_s, decided_at=decided_at)


def _approve(
    line: Any, start_mv: dict[str, float], plan: dict[str, list[float]], *, engineer: Any, ttl_s: float, decided_at: Any
) -> Any:
    from twinops.modeling.selectors import twin_promoted
    from twinops.recommendations.models import Recommendation, Signature
    from twinops.recommendations.selectors import proposal_content_sha256

    now = datetime.now(UTC)
    decided_at = decided_at or now
    slot = decided_at.replace(microsecond=0) - timedelta(seconds=Recommendation.objects.count())
    rec = Recommendation.objects.create(
        line=line,
        slot=slot,
        status=Recommendation.Status.APPROVED,
        created_at=now,
        created_by_label="system:test",
        expires_at=now + timedelta(seconds=ttl_s),
        twin_version=twin_promoted(line=line),
        spec_version=line.current_spec,
        inputs={"current_mv": dict(start_mv)},
        result={"status": "optimal", "mv_plan": plan},
        decided_at=decided_at,
    )
    sha = proposal_content_sha256(rec, scale=1.0)
    rec.approved_plan = {
        "scale": 1.0,
        "start_mv": dict(start_mv),
        "mv_plan": plan,
        "sample_period_s": float(line.sample_period_s),
        "content_sha256": sha,
    }
    rec.save(update_fields=["approved_plan"])
    Signature.objects.create(
        recommendation=rec,
        user=engineer,
        username=engineer.username,
        full_name=engineer.username,
        meaning=Signature.Meaning.APPROVED,
        signed_at=now,
        content_sha256=sha,
    )
    return rec


def ramp_plan(
    start: dict[str, float], steps: int = 3, *, mv: str = "F_feed", move: float = 0.3
) -> dict[str, list[float]]:
    """Return a plan moving one MV by `move` per step (inside its ramp), holding the others."""
    return {
        name: [value + (move * (k + 1) if name == mv else 0.0) for k in range(steps)] for name, value in start.items()
    }


async def until(check: Callable[[], Any], timeout_s: float = 60.0) -> None:
    """Wait (polling the ORM off the event loop) until check() is true.

    60 s: the first release of a session also loads the twin for its trust re-check, which on a busy 2-core machine
    took longer than 20 s (a CI run timed out); a check that holds returns at once.
    """

    def probe() -> Any:
        from django.db import connection

        try:
            return check()
        finally:
            connection.close()

    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await asyncio.to_thread(probe):
        assert asyncio.get_running_loop().time() < deadline, f"timed out; the event loop's tasks:\n{_tasks_dump()}"
        await asyncio.sleep(0.1)


def _tasks_dump() -> str:
    """Return where each task of the running loop waits and the proposals and releases stored (what the agent saw)."""
    import io
    import threading

    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(file=out)

    def rows() -> None:
        from django.db import connection

        from twinops.recommendations.models import Recommendation
        from twinops.releases.models import Release

        for r in Recommendation.objects.values("id", "status", "decided_at", "expires_at"):
            out.write(f"proposal: {r}\n")
        for r in Release.objects.values("id", "recommendation_id", "status", "steps", "steps_done", "reason"):
            out.write(f"release: {r}\n")
        connection.close()

    reader = threading.Thread(target=rows)
    reader.start()
    reader.join(10)
    return out.getvalue()
