"""Twin benchmarks: cascaded tanks and DaISy CSTR over several training seeds, with and without the JEPA term.

Honest by construction (issue 12 item 9):
- Figures are mean ± sample sd over SEEDS (training seeds), each seed listed.
- The cascaded-tanks hyper-parameters are chosen on validation only: the estimation record is split into a fit part
  and its last VALIDATION_SHARE, each config of TANKS_GRID is scored by free-run RMSE on that part over TUNING_SEEDS
  (never among SEEDS), and the winner is retrained on the whole estimation record and scored once on the test record.
  TANKS itself (horizon 250, history dropout 0.3) was first picked while watching the test record's RMSE; it now
  only competes in the grid like the others.
- The ablation retrains with the same seeds and `w_latent = 0` (no JEPA latent-prediction loss; the VICReg terms
  on the encoder latents stay), so the two columns differ only in that term.
- The published figures for the tanks test record are reported beside ours.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
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

# Changes to TANKS compared on validation, one at a time around it (each tanks training costs minutes on one core).
TANKS_GRID: tuple[dict[str, Any], ...] = ({}, {"horizon": 120}, {"history_dropout": 0.1})
VALIDATION_SHARE = 0.25  # last quarter of the estimation record: 256 of 1024 samples
SEEDS = (1, 2, 3, 4, 5)  # reported training seeds
TUNING_SEEDS = (101, 102)  # seeds of the validation runs, never reported
QUICK: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 10, "eval_starts": 200, "val_windows": 64}  # tiny, for tests
# Free-run RMSE on the tanks test record in volts, as published (the benchmark's linear model and polynomial nonlinear
# state-space model, and the best published result), as issue 12 quotes them.
PUBLISHED_TANKS_V = {"linear": 0.757, "pnlss": 0.450, "best_published": 0.343}


def shared_data() -> Path:
    """Return the shared data folder (env TWINOPS_SHARED_DATA overrides the checkout-relative default)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("TWINOPS_SHARED_DATA", default))


def tanks_records() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the tanks' estimation input, test input, estimation output and test output, in volts."""
    raw = np.genfromtxt(shared_data() / "cascaded_tanks" / "dataBenchmark.csv", delimiter=",", skip_header=1)
    return raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]


def tanks_freerun(
    config: TwinConfig, u_fit: np.ndarray, y_fit: np.ndarray, u_eval: np.ndarray, y_eval: np.ndarray
) -> dict[str, float]:
    """Fit on one record, free-run the other from its first output only; RMSE in volts, twin and linear."""
    gap = config.window  # masked rows between the two experiments: no window ever spans both
    nan = np.full(gap, np.nan)
    data = TwinDataset.from_arrays(
        cv=np.concatenate([y_fit, nan, y_eval]),
        mv=np.concatenate([u_fit, nan, u_eval]),
        cv_names=["lower_tank_v"],
        mv_names=["pump_v"],
        sample_period_s=4.0,
    )
    stop = len(y_fit) + gap
    split = DataSplit(data, train_stop=stop, val_stop=stop)
    twin = train_twin(split, config)
    s0 = stop
    pred = twin.predict(data, np.array([s0]), len(y_eval) - 1).mean[0, :, 0]  # (len(y_eval),) volts, from y_eval[0]
    rec = Record.build(split, twin.norm)
    linear = fit_linear(rec, split)
    # The linear model needs past samples too: give it the same knowledge, a steady state at the first sample.
    y, u = rec.y.copy(), rec.u.copy()
    y[:s0], u[:s0] = y[s0], u[s0]
    lin = linear.forecast(dataclasses.replace(rec, y=y, u=u), np.array([s0]), len(y_eval) - 1)[0, :, 0]
    lin_v = lin * twin.norm.cv_std[0] + twin.norm.cv_mean[0]
    return {
        "rmse": float(np.sqrt(np.mean((pred - y_eval) ** 2))),
        "linear_rmse": float(np.sqrt(np.mean((lin_v - y_eval) ** 2))),
        "train_seconds": twin.info.seconds,
    }


def cascaded_tanks_validation(config: TwinConfig) -> dict[str, float]:
    """Fit on the first part of the estimation record, free-run its last VALIDATION_SHARE; the test record is unused."""
    u_est, _, y_est, _ = tanks_records()
    cut = round(len(y_est) * (1.0 - VALIDATION_SHARE))
    return tanks_freerun(config, u_est[:cut], y_est[:cut], u_est[cut:], y_est[cut:])


def cascaded_tanks(config: TwinConfig) -> dict[str, float]:
    """Fit on the whole estimation record, free-run the test record from its first output; RMSE in volts."""
    u_est, u_test, y_est, y_test = tanks_records()
    return tanks_freerun(config, u_est, y_est, u_test, y_test)


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


def _spread(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (ddof 1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _seeded(key: str, per_seed: dict[int, float]) -> dict[str, Any]:
    """Return `key`_mean, `key`_sd and `key`_per_seed for one figure measured once per seed."""
    mean, sd = _spread(list(per_seed.values()))
    return {f"{key}_mean": mean, f"{key}_sd": sd, f"{key}_per_seed": {str(s): v for s, v in per_seed.items()}}


def _worker_init() -> None:
    # One torch thread per worker: the pool already uses every core, and two OpenMP threads per core stall each other.
    torch.set_num_threads(1)


def _submit(
    pool: ProcessPoolExecutor, run: Callable[[TwinConfig], dict[str, Any]], config: TwinConfig, label: str, key: str
) -> Future[dict[str, Any]]:
    """Queue one training; note its figure on stderr when it ends (a full run lasts long; stdout stays the JSON)."""

    def note(done: Future[dict[str, Any]]) -> None:
        if done.exception() is None:
            print(
                f"bench twin: {label} seed {config.seed}: {key} {done.result()[key]:.4f}", file=sys.stderr, flush=True
            )

    future = pool.submit(run, config)
    future.add_done_callback(note)
    return future


def tanks_choice(
    grid: Sequence[dict[str, Any]], runs: dict[tuple[int, int], Future[dict[str, Any]]]
) -> tuple[int, dict[str, Any]]:
    """Return the grid index with the lowest mean validation RMSE and the scores of every config."""
    scores = []
    for i, change in enumerate(grid):
        rmse = {s: f.result()["rmse"] for (j, s), f in runs.items() if j == i}
        scores.append({"change": change, **_seeded("rmse", rmse)})
    return min(range(len(grid)), key=lambda i: scores[i]["rmse_mean"]), {"grid": scores}


def seeded(
    *,
    quick: bool = False,
    seeds: Sequence[int] = SEEDS,
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Choose the tanks config on validation, then score tanks and CSTR per seed, with and without JEPA.

    Trainings run in `jobs` processes (default: env TWINOPS_BENCH_TWIN_JOBS, else one per core). The full run trains
    the tanks twin 16 times (about 5 min each on one core) and the CSTR twin 10 times; quick mode 6 and 4, tiny.
    """
    small = QUICK if quick else {}
    grid = TANKS_GRID[:2] if quick else TANKS_GRID
    seeds, tuning_seeds = (list(seeds)[:2], list(tuning_seeds)[:1]) if quick else (list(seeds), list(tuning_seeds))
    if set(seeds) & set(tuning_seeds):
        raise ValueError(f"tuning seeds {sorted(set(seeds) & set(tuning_seeds))} are also reported seeds")
    jobs = jobs or int(os.environ.get("TWINOPS_BENCH_TWIN_JOBS", "0")) or os.cpu_count() or 1
    tanks_base, cstr_base = dataclasses.replace(TANKS, **small), dataclasses.replace(CSTR, **small)
    variants: dict[str, dict[str, Any]] = {
        "": {},
        "_no_jepa": {"w_latent": 0.0},
    }  # the ablation: no JEPA latent-prediction loss
    out: dict[str, Any] = {"quick": quick, "seeds": seeds}
    clock = time.perf_counter()
    # spawn, not fork: a forked child of a process that has run OpenMP code can hang in its first parallel region.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init) as pool:
        tuning = {
            (i, s): _submit(
                pool,
                cascaded_tanks_validation,
                dataclasses.replace(tanks_base, **change, seed=s),
                f"tanks validation {change or 'TANKS'}",
                "rmse",
            )
            for i, change in enumerate(grid)
            for s in tuning_seeds
        }
        # Queued behind the validation runs: the CSTR twins keep the pool busy while the tanks choice finishes.
        cstr = {
            (v, s): _submit(
                pool,
                daisy_cstr,
                dataclasses.replace(cstr_base, **change, seed=s),
                f"cstr{v}",
                "daisy_cstr_freerun_nrmse",
            )
            for v, change in variants.items()
            for s in seeds
        }
        best, validation = tanks_choice(grid, tuning)
        tanks = {
            (v, s): _submit(
                pool,
                cascaded_tanks,
                dataclasses.replace(tanks_base, **grid[best], **change, seed=s),
                f"tanks test{v}",
                "rmse",
            )
            for v, change in variants.items()
            for s in seeds
        }
        tanks_chosen = dataclasses.replace(tanks_base, **grid[best])
        rows = len(tanks_records()[0])
        cut = round(rows * (1.0 - VALIDATION_SHARE))
        out["cascaded_tanks_validation"] = {
            "fit_rows": cut,
            "validation_rows": rows - cut,
            "tuning_seeds": tuning_seeds,
            **validation,
            "chosen": {
                "change": grid[best],
                "horizon": tanks_chosen.horizon,
                "history_dropout": tanks_chosen.history_dropout,
            },
        }
        for v in variants:
            got = {s: tanks[v, s].result() for s in seeds}
            out.update(_seeded(f"cascaded_tanks_freerun_rmse{v}", {s: r["rmse"] for s, r in got.items()}))
            if not v:
                out["cascaded_tanks_linear_freerun_rmse"] = got[seeds[0]]["linear_rmse"]  # no seed: the same each run
                out["cascaded_tanks_train_seconds_mean"] = _spread([r["train_seconds"] for r in got.values()])[0]
        for v in variants:
            got = {s: cstr[v, s].result() for s in seeds}
            for key in ("daisy_cstr_freerun_nrmse", "daisy_cstr_nrmse_h20"):
                out.update(_seeded(f"{key}{v}", {s: r[key] for s, r in got.items()}))
            if not v:
                first = got[seeds[0]]  # the baselines have no seed
                for key in (
                    "daisy_cstr_linear_nrmse_h20",
                    "daisy_cstr_persistence_nrmse_h20",
                    "daisy_cstr_linear_freerun_nrmse",
                ):
                    out[key] = first[key]
                out["daisy_cstr_coverage_h1_to_h20_mean"] = _spread(
                    [r["daisy_cstr_coverage_h1_to_h20"] for r in got.values()]
                )[0]
                out["daisy_cstr_promotable_seeds"] = sum(bool(r["daisy_cstr_promotable"]) for r in got.values())
    out["cascaded_tanks_published_rmse"] = PUBLISHED_TANKS_V
    out["cascaded_tanks_summary"] = (
        f"free-run RMSE on the test record: twin {out['cascaded_tanks_freerun_rmse_mean']:.3f} ± "
        f"{out['cascaded_tanks_freerun_rmse_sd']:.3f} V over {len(seeds)} seeds (without JEPA "
        f"{out['cascaded_tanks_freerun_rmse_no_jepa_mean']:.3f} ± {out['cascaded_tanks_freerun_rmse_no_jepa_sd']:.3f}); "
        f"our linear {out['cascaded_tanks_linear_freerun_rmse']:.3f}; published: linear {PUBLISHED_TANKS_V['linear']}, "
        f"PNLSS {PUBLISHED_TANKS_V['pnlss']}, best {PUBLISHED_TANKS_V['best_published']}"
    )
    out["seeded_runs_seconds"] = time.perf_counter() - clock
    return out


def run(
    *,
    quick: bool = False,
    faults: bool | None = None,
    seeds: Sequence[int] = SEEDS,
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the twin benchmarks and return their figures as a JSON-able dict.

    `faults` (default: on unless env TWINOPS_BENCH_TWIN_FAULTS=0) adds fault detection (bench/_faults.py, ~3 min).
    """
    out = seeded(quick=quick, seeds=seeds, tuning_seeds=tuning_seeds, jobs=jobs)
    small = QUICK if quick else {}
    out.update(cpu_training_time(20_000 if quick else 500_000, dataclasses.replace(TwinConfig(), **small)))
    if torch.cuda.is_available():
        data = synthetic_line(20_000 if quick else 500_000)
        out["train_seconds_gpu"] = train_twin(
            split_by_time(data), dataclasses.replace(TwinConfig(), **small)
        ).info.seconds
    if faults if faults is not None else os.environ.get("TWINOPS_BENCH_TWIN_FAULTS", "1") != "0":
        out.update(_faults.run(shared_data(), quick=quick))
    return out
