"""A two-tank line with tiny twin configs, one shared trained twin, and a helper to register versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import torch

PERIOD_S = 10.0
T0 = datetime(2026, 1, 5, tzinfo=UTC)
# Trains in about a second on a shared 2-core machine; far too small to be accurate, enough to exercise the platform.
TINY: dict[str, Any] = {
    "window": 8,
    "nz": 4,
    "hidden": 16,
    "depth": 1,
    "members": 2,
    "horizon": 10,
    "epochs": 2,
    "steps_per_epoch": 5,
    "batch_size": 16,
    "val_windows": 32,
    "eval_starts": 100,
    "min_train_samples": 100,
}
TAGS = (
    ("upper_level_m", "CV", "m"),
    ("lower_level_m", "CV", "m"),
    ("pump_flow_m3_h", "MV", "m3/h"),
    ("leak_m3_h", "DV", "m3/h"),
)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # Six engineers share two cores: one thread per process trains several times faster than oversubscribed ones.
    torch.set_num_threads(1)


def two_tanks(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Simulate two cascaded tanks fed by a pump (MV, steps every 20 samples) with a slow leak (DV)."""
    rng = np.random.default_rng(seed)
    pump = np.repeat(rng.uniform(0.5, 1.5, rows // 20 + 1), 20)[:rows]
    leak = 0.2 * np.tanh(np.cumsum(rng.normal(0.0, 0.02, rows)))
    x = np.zeros((rows, 2))
    x[0] = [1.0, 1.0]
    for t in range(rows - 1):
        out1 = 0.6 * np.sqrt(max(x[t, 0], 0.0))
        x[t + 1, 0] = x[t, 0] + 0.1 * (pump[t] - out1 + leak[t])
        x[t + 1, 1] = x[t, 1] + 0.1 * (out1 - 0.5 * np.sqrt(max(x[t, 1], 0.0)))
    level = x + rng.normal(0.0, 0.01, x.shape)
    # Columns in TAGS order: upper level, lower level, pump, leak.
    return {
        "values": np.column_stack([level, pump, leak]),
        "times": [T0 + timedelta(seconds=PERIOD_S * i) for i in range(rows)],
    }


@pytest.fixture
def line(db: None) -> Any:
    """Create the two-tank line with its CV, MV and DV tags."""
    from twinops.lines.models import Line, Tag

    line = Line.objects.create(key="tanks", name="Two tanks", sample_period_s=PERIOD_S, created_at=T0)
    for name, role, unit in TAGS:
        Tag.objects.create(line=line, name=name, role=role, unit=unit, physical_low=-10.0, physical_high=10.0)
    return line


@pytest.fixture(scope="session")
def trained() -> Any:
    """Train one tiny twin on 1200 rows of the two-tank line, outside any database (shared: it costs seconds)."""
    from twinops.modeling.datasets import LineRecord
    from twinops.modeling.services import twin_config
    from twins import TwinDataset, train_and_evaluate

    data = two_tanks(1200)
    v = data["values"]
    dataset = TwinDataset.from_arrays(
        cv=v[:, :2],
        mv=v[:, 2:3],
        dv=v[:, 3:],
        cv_names=[t[0] for t in TAGS[:2]],
        mv_names=[TAGS[2][0]],
        dv_names=[TAGS[3][0]],
        sample_period_s=PERIOD_S,
    )
    record = LineRecord(dataset=dataset, timestamps=data["times"])
    return record, train_and_evaluate(dataset, twin_config(TINY))


@pytest.fixture
def register(trained: Any) -> Callable[..., Any]:
    """Register the shared trained twin as a new version of a line; promotable forces the report's verdict."""
    from twinops.modeling import services

    def make(line: Any, *, promotable: bool | None = None) -> Any:
        record, outcome = trained
        if promotable is not None:
            verdict = "beats" if promotable else "does not beat"
            report = dataclasses.replace(
                outcome.report,
                promotable=promotable,
                reason=f"twin free-run NRMSE (test) {verdict} the linear baseline's",
            )
            outcome = dataclasses.replace(outcome, report=report)
        job = services.training_job_create(line=line, actor="system:test", config_overrides=TINY, enqueue=False)
        job = services.training_job_claim(job_id=job.pk)
        return services.twin_version_register(job=job, record=record, outcome=outcome)

    return make


@pytest.fixture(scope="session")
def tiny() -> dict[str, Any]:
    """Return TwinConfig overrides small enough to train in about a second."""
    return dict(TINY)


@pytest.fixture(scope="session")
def tanks() -> Callable[..., dict[str, Any]]:
    """Return the two-tank simulator: tanks(rows, seed) -> {"values": (T, 4) in TAGS order, "times": [...]}."""
    return two_tanks


@pytest.fixture
def ingest() -> Callable[..., dict[str, Any]]:
    """Store tanks() data as the line's telemetry through the real ingest service; NaN readings become bad samples."""
    from twinops.telemetry.batch import RawBatch, datetime_to_us
    from twinops.telemetry.services import samples_ingest

    def store(line: Any, data: dict[str, Any]) -> dict[str, Any]:
        values = np.asarray(data["values"], np.float64)  # (T, n_tags) in TAGS order
        rows, n_tags = values.shape
        ts_us = np.asarray([datetime_to_us(t) for t in data["times"]], np.int64)
        batch = RawBatch(
            names=tuple(t[0] for t in TAGS),
            tag=np.tile(np.arange(n_tags, dtype=np.int32), rows),
            ts_us=np.repeat(ts_us, n_tags),
            value=values.reshape(-1),
            row=np.repeat(np.arange(1, rows + 1), n_tags),
        )
        samples_ingest(line=line, batch=batch, source="test", actor="system:test")
        return data

    return store


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the training jobs sent to the train queue instead of sending them to the shared broker."""
    from twinops.modeling import tasks

    jobs: list[int] = []
    monkeypatch.setattr(tasks.train_twin, "delay", jobs.append)
    return jobs
