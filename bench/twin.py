"""Twin benchmarks: cascaded tanks and DaISy CSTR against the linear baseline, and CPU training time."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import _faults
from twins import (
    DataSplit,
    Record,
    TwinConfig,
    TwinDataset,
    fit_linear,
    split_by_time,
    train_and_evaluate,
    train_twin,
)

# Free-run twin for the 1024-sample tanks record: long rollouts, since the benchmark scores a 1023-step simulation.
TANKS = TwinConfig(
    window=8,
    nz=4,
    hidden=64,
    depth=2,
    horizon=250,
    epochs=30,
    steps_per_epoch=50,
    batch_size=32,
    lr=5e-3,
    history_dropout=0.3,
    min_train_samples=200,
)
CSTR = TwinConfig(window=10, nz=12, hidden=64, depth=2, horizon=30, epochs=30, steps_per_epoch=50)


def shared_data() -> Path:
    """Return the shared data folder (env TWINOPS_SHARED_DATA overrides the checkout-relative default)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("TWINOPS_SHARED_DATA", default))


def cascaded_tanks(config: TwinConfig) -> dict[str, float]:
    """Fit on the estimation record, free-run on the validation record from its first output; RMSE in volts."""
    raw = np.genfromtxt(shared_data() / "cascaded_tanks" / "dataBenchmark.csv", delimiter=",", skip_header=1)
    u_est, u_val, y_est, y_val = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
    gap = config.window  # masked rows between the two experiments: no window ever spans both
    nan = np.full(gap, np.nan)
    data = TwinDataset.from_arrays(
        cv=np.concatenate([y_est, nan, y_val]),
        mv=np.concatenate([u_est, nan, u_val]),
        cv_names=["lower_tank_v"],
        mv_names=["pump_v"],
        sample_period_s=4.0,
    )
    stop = len(y_est) + gap
    split = DataSplit(data, train_stop=stop, val_stop=stop)
    twin = train_twin(split, config)
    s0 = stop
    pred = twin.predict(data, np.array([s0]), len(y_val) - 1).mean[0, :, 0]  # (1024,) volts, from y_val[0] only
    rec = Record.build(split, twin.norm)
    linear = fit_linear(rec, split)
    # The linear model needs past samples too: give it the same knowledge, a steady state at the first sample.
    y, u = rec.y.copy(), rec.u.copy()
    y[:s0], u[:s0] = y[s0], u[s0]
    lin = linear.forecast(dataclasses.replace(rec, y=y, u=u), np.array([s0]), len(y_val) - 1)[0, :, 0]
    lin_v = lin * twin.norm.cv_std[0] + twin.norm.cv_mean[0]
    return {
        "cascaded_tanks_freerun_rmse": float(np.sqrt(np.mean((pred - y_val) ** 2))),
        "linear_freerun_rmse": float(np.sqrt(np.mean((lin_v - y_val) ** 2))),
        "cascaded_tanks_train_seconds": twin.info.seconds,
    }


def daisy_cstr(config: TwinConfig) -> dict[str, Any]:
    """Train on the first 70% of the CSTR record, score 20-step NRMSE on the last 15%."""
    raw = np.loadtxt(shared_data() / "daisy_cstr" / "cstr.dat")
    data = TwinDataset.from_arrays(
        cv=raw[:, 2:4],
        mv=raw[:, 1],
        cv_names=["ca_mol_l", "temp_k"],
        mv_names=["coolant_l_min"],
        sample_period_s=6.0,
    )
    report = train_and_evaluate(split_by_time(data), config).report
    return {
        "daisy_cstr_nrmse_h20": report.twin.mean["h20"],
        "daisy_cstr_linear_nrmse_h20": report.baselines["linear_arx"].mean["h20"],
        "daisy_cstr_persistence_nrmse_h20": report.baselines["persistence"].mean["h20"],
        "daisy_cstr_freerun_nrmse": report.twin.mean["free_run"],
        "daisy_cstr_linear_freerun_nrmse": report.baselines["linear_arx"].mean["free_run"],
        "daisy_cstr_coverage_h1_to_h20": float(np.mean(list(report.coverage["h1_to_h20"].values()))),
        "daisy_cstr_promotable": report.promotable,
    }


def synthetic_line(rows: int, seed: int = 0) -> TwinDataset:
    """Simulate a 10-tag line (4 CVs, 4 MVs, 2 DVs): coupled first-order lags with mild nonlinearity."""
    rng = np.random.default_rng(seed)
    mv = np.repeat(rng.normal(size=(rows // 50 + 1, 4)), 50, axis=0)[:rows]
    dv = np.cumsum(rng.normal(0, 0.01, (rows, 2)), axis=0)
    gain = rng.normal(size=(4, 4)) * 0.5
    x = np.zeros((rows, 4))
    drive = np.tanh(mv @ gain) + dv @ rng.normal(size=(2, 4)) * 0.3  # (T, 4), precomputed: the loop stays cheap
    for t in range(rows - 1):
        x[t + 1] = 0.95 * x[t] + 0.05 * drive[t] - 0.01 * x[t] ** 3
    cv = x + rng.normal(0, 0.01, x.shape)
    return TwinDataset.from_arrays(
        cv=cv,
        mv=mv,
        dv=dv,
        cv_names=[f"cv{i}" for i in range(4)],
        mv_names=[f"mv{i}" for i in range(4)],
        dv_names=["dv0", "dv1"],
        sample_period_s=60.0,
    )


def cpu_training_time(rows: int, config: TwinConfig) -> dict[str, Any]:
    """Train the given twin on a synthetic 10-tag line on CPU; return wall seconds."""
    data = synthetic_line(rows)
    clock = time.perf_counter()
    # One torch thread: on a 2-core host the batched small matmuls gain little from a second thread,
    # and when the host is busy two OpenMP threads stall each other (measured 5-7x slower).
    twin = train_twin(split_by_time(data), config, device="cpu", cpu_threads=1)
    return {
        "train_seconds_cpu": time.perf_counter() - clock,
        "train_rows_cpu": rows,
        "train_threads_cpu": 1,
        "train_steps_cpu": config.epochs * config.steps_per_epoch,
        "train_last_val_cv_mse": twin.info.history[-1].get("val_cv"),
    }


def run(*, quick: bool = False, faults: bool | None = None) -> dict[str, Any]:
    """Run the twin benchmarks and return their figures as a JSON-able dict.

    `faults` (default: on unless env TWINOPS_BENCH_TWIN_FAULTS=0) adds fault detection (bench/_faults.py, ~3 min).
    """
    small: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 10, "eval_starts": 200, "val_windows": 64} if quick else {}
    out: dict[str, Any] = {"quick": quick}
    out.update(cascaded_tanks(dataclasses.replace(TANKS, **small)))
    out.update(daisy_cstr(dataclasses.replace(CSTR, **small)))
    out.update(cpu_training_time(20_000 if quick else 500_000, dataclasses.replace(TwinConfig(), **small)))
    if torch.cuda.is_available():
        data = synthetic_line(20_000 if quick else 500_000)
        out["train_seconds_gpu"] = train_twin(
            split_by_time(data), dataclasses.replace(TwinConfig(), **small)
        ).info.seconds
    if faults if faults is not None else os.environ.get("TWINOPS_BENCH_TWIN_FAULTS", "1") != "0":
        out.update(_faults.run(shared_data(), quick=quick))
    return out
