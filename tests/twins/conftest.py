"""Small synthetic lines with fixed seeds, and one shared trained twin, for the twins tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from twins import TrainingOutcome, TwinConfig, TwinDataset, train_and_evaluate

TINY = TwinConfig(
    window=8,
    nz=6,
    hidden=24,
    depth=2,
    members=5,
    horizon=40,
    epochs=8,
    steps_per_epoch=30,
    batch_size=32,
    val_windows=64,
    eval_starts=300,
    min_train_samples=100,
)


def two_tanks(rows: int, seed: int = 0, outflow: float = 0.5) -> dict[str, np.ndarray]:
    """Simulate two cascaded tanks (square-root outflows) fed by a pump MV with a leak DV; returns arrays.

    outflow is the lower tank's outflow coefficient (0.5 in every record the shared twins are trained on)."""
    rng = np.random.default_rng(seed)
    pump = np.repeat(rng.uniform(0.5, 1.5, rows // 20 + 1), 20)[:rows]
    leak = np.zeros(rows)  # stationary AR(1) disturbance, so test data resemble training data
    for t in range(rows - 1):
        leak[t + 1] = 0.98 * leak[t] + rng.normal(0.0, 0.02)
    x = np.zeros((rows, 2))
    x[0] = [1.0, 1.0]
    for t in range(rows - 1):
        out1 = 0.6 * np.sqrt(max(x[t, 0], 0.0))
        x[t + 1, 0] = x[t, 0] + 0.1 * (pump[t] - out1 + leak[t])
        x[t + 1, 1] = x[t, 1] + 0.1 * (out1 - outflow * np.sqrt(max(x[t, 1], 0.0)))
    level = x + rng.normal(0.0, 0.01, x.shape)
    return {"cv": level, "mv": pump[:, None], "dv": leak[:, None]}


def as_dataset(arrays: dict[str, np.ndarray], **masks: np.ndarray) -> TwinDataset:
    """Wrap two-tank arrays as a dataset with tag names."""
    return TwinDataset.from_arrays(
        cv=arrays["cv"],
        mv=arrays["mv"],
        dv=arrays["dv"],
        cv_names=["upper_level_m", "lower_level_m"],
        mv_names=["pump_flow_m3_h"],
        dv_names=["leak_m3_h"],
        sample_period_s=10.0,
        **masks,
    )


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Run torch single-threaded: tiny ops gain nothing from threads, and a shared 2-core host stalls them."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny() -> TwinConfig:
    """Return a config small enough for a test to train in seconds."""
    return TINY


@pytest.fixture(scope="session")
def quick() -> TwinConfig:
    """Return a config that trains in about a second (for comparing runs, not for accuracy)."""
    return dataclasses.replace(TINY, epochs=2, steps_per_epoch=5)


@pytest.fixture(scope="session")
def tanks() -> Callable[..., TwinDataset]:
    """Return a factory of two-tank datasets: tanks(rows, seed)."""
    return lambda rows=3000, seed=0: as_dataset(two_tanks(rows, seed))


@pytest.fixture(scope="session")
def trained(tanks: Callable[..., TwinDataset]) -> TrainingOutcome:
    """Train one tiny twin with baselines on 3000 rows of the two-tank line (shared: it costs seconds)."""
    return train_and_evaluate(tanks(3000, 0), TINY)
