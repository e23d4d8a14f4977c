"""Latent estimation on the demo's own lines: k-step forecast error from the encoder's latent vs the moving horizon's.

Each line's first demo twin (trained as `twinops demo` trains it; bench/calibration.py's `trained`, same cache:
env TWINOPS_BENCH_CALIBRATION_CACHE) forecasts from up to 1000 evenly spaced starts of a segment over the recorded
inputs, from three latents: the encoder's (`encoder`; a twin whose training did not keep the fit uses it), the encoder's latent of
`horizon` samples earlier rolled forward without fitting (`rolled`, the share of the gain that is only the
dynamics'), and twins.estimation's moving-horizon estimate (`mhe`). NRMSE mean over CVs at h1/h5/h20, as
twins.evaluate scores them. The settings grid is scored on the validation segment only (`val_grid`; `chosen` is the
best summed h5 + h20 ratio over the lines, h1 not worse); the test segment is scored with the library's defaults.
`ms_per_estimate`: one estimate (one row, all members), on this machine, beside the encoder's. Training keeps the
fit per twin where it is no worse at h1, h5 and h20 on validation (twins.estimation.choose_estimator).

`drifted` (the reactor): what training's validation cannot show, a plant that drifted after training. The reactor's
twin, trained on the nominal plant, forecasts MISMATCH_DAYS of fresh step tests (`plantsim`'s, as the demo history's)
run on `bench closedloop`'s mismatch plant (A -> B rate constant x 0.85) and, beside it, on the nominal plant (other
noise and DV seeds than training's), from three states: the encoder's, the plain fit (`mhe`, 16 samples) and the
offset fit (`mhe_offset`, a constant CV offset beside the latent, 48 samples, the first candidate training tries);
each forecast adds the CV bias the recommender would add (optimizer.estimation's filter over the MEMORY_SAMPLES
samples before the start, the raw bias measured minus the twin's reading of its state there). RMS error in training
CV sds at h1/h5/h20 (`rms`) and the mean signed error at h20 (`mean_h20`; a steady error is what makes a plan drift
over a limit).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.calibration import DAYS, LINES, trained
from bench.closedloop import plant
from optimizer.estimation import MEMORY_SAMPLES, cv_bias_filter
from plantsim.history import StepTestPlan, run_step_tests
from twins import DataSplit, Record, Twin, TwinConfig
from twins.data import TwinDataset
from twins.estimation import OFFSET_HORIZON, OFFSET_SCALE, MheSettings, estimate_with_offset, forecast_from
from twins.evaluate import HORIZONS, _nrmse
from twins.uncertainty import spaced
from twins.windows import LineTensors

STARTS = 1000  # forecast starts per segment, evenly spaced (as twins.evaluate)
GRID = [
    MheSettings(horizon=h, prior_scale=p, iterations=i)
    for h, p, i in itertools.product((2, 4, 8, 16), (0.1, 0.3, 1.0), (1, 2))
]
MISMATCH_DAYS = 0.4  # of fresh step tests on the drifted plant (and on the nominal one beside it)
DRIFT_STARTS = 300  # forecast starts on each; each start also estimates the MEMORY_SAMPLES states before it
DRIFT_SEED = 41  # the plants' noise and DV seed and the step tests': not the demo history's (0)
ROLLED = 1e-4  # a prior scale so tight that the fit cannot move the latent: the encoder's latent rolled forward


def _rows(split: DataSplit, lo: int, hi: int, steps: int, most: int) -> np.ndarray:
    """Good forecast starts in [lo, hi - steps) with room for the longest horizon's history before them."""
    good = split.dataset.row_good()
    rows = np.arange(max(lo, 64), hi - steps)
    return spaced(rows[good[rows]], most)


def _score(twin: Twin, lt: LineTensors, rec: Record, rows: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """NRMSE mean over CVs at each horizon of the member-mean forecast from latents z at rows."""
    steps = max(HORIZONS)
    pred = forecast_from(twin, lt, rows, z, steps).mean(0)  # (N, K, n_cv)
    idx = rows[:, None] + np.arange(steps + 1)
    truth, mask = rec.y[idx], rec.y_mask[idx]
    return {f"h{h}": round(float(np.mean(_nrmse(pred[:, h], truth[:, h], mask[:, h]))), 4) for h in HORIZONS}


def _estimate_ms(twin: Twin, split: DataSplit, lt: LineTensors, row: int, settings: MheSettings, reps: int) -> float:
    """Milliseconds of one estimate at one row (all members), median of reps after a warm-up."""
    one = np.array([row])
    estimate_with_offset(twin, split.dataset, one, lt, settings)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        estimate_with_offset(twin, split.dataset, one, lt, settings)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 2)


def _line(twin: Twin, split: DataSplit, grid: list[MheSettings], reps: int) -> dict[str, Any]:
    """Validation grid and test figures of one line."""
    data, steps = split.dataset, max(HORIZONS)
    rec, lt = Record.build(split, twin.norm), twin.tensors(data)
    val = _rows(split, split.train_stop, split.val_stop, steps, STARTS)
    test = _rows(split, split.val_stop, len(data), steps, STARTS)
    default = MheSettings()
    rolled = dataclasses.replace(default, prior_scale=ROLLED)

    def scores(rows: np.ndarray, settings: MheSettings) -> dict[str, float]:
        return _score(twin, lt, rec, rows, estimate_with_offset(twin, data, rows, lt, settings)[0])

    encoder = MheSettings(horizon=0)
    return {
        "val_grid": {
            "encoder": scores(val, encoder),
            **{f"{s.horizon}/{s.prior_scale:g}/{s.iterations}": scores(val, s) for s in grid},
        },
        "test": {name: scores(test, s) for name, s in (("encoder", encoder), ("rolled", rolled), ("mhe", default))},
        "ms_per_estimate": {
            "encoder": _estimate_ms(twin, split, lt, int(test[0]), encoder, reps),
            "mhe": _estimate_ms(twin, split, lt, int(test[0]), default, reps),
        },
        "test_starts": int(test.size),
    }


def _step_tests(case: str, twin: Twin, days: float) -> TwinDataset:
    """Run plantsim's step tests on a closed-loop bench plant for `days`: the record the twin forecasts."""
    sim = plant(case, DRIFT_SEED)
    names = (*twin.cv_names, *twin.mv_names, *twin.dv_names)
    n, dt = int(days * 86400 / sim.line.sample_period_s), sim.line.sample_period_s
    rows, _ = run_step_tests(sim, n, names, np.random.default_rng(DRIFT_SEED), StepTestPlan())
    a, nc, nm = np.asarray(rows), len(twin.cv_names), len(twin.mv_names)
    return TwinDataset.from_arrays(
        cv=a[:, :nc],
        mv=a[:, nc : nc + nm],
        dv=a[:, nc + nm :],
        cv_names=twin.cv_names,
        mv_names=twin.mv_names,
        dv_names=twin.dv_names,
        sample_period_s=dt,
    )


def _drifted(twin: Twin, days: float, starts: int) -> dict[str, Any]:
    """Forecast errors with the recommender's CV bias from each state, on the drifted and the nominal plant."""
    steps, floor = max(HORIZONS), tuple(float(v) for v in twin.calibration.floor)
    states = {
        "encoder": MheSettings(horizon=0),
        "mhe": MheSettings(noise=floor),
        "mhe_offset": MheSettings(horizon=OFFSET_HORIZON, noise=floor, offset_scale=OFFSET_SCALE),
    }
    out: dict[str, Any] = {}
    for case in ("vdv-reactor-mismatch", "vdv-reactor"):
        data = _step_tests(case, twin, days)
        lt = twin.tensors(data)
        rows = spaced(np.arange(OFFSET_HORIZON + MEMORY_SAMPLES, len(data) - steps), starts)
        before = rows[:, None] - np.arange(MEMORY_SAMPLES)[::-1]  # (N, MEMORY_SAMPLES): the bias filter's samples
        idx = rows[:, None] + np.arange(steps + 1)
        truth, seen = lt.y[idx].double().numpy(), lt.y_mask[idx].numpy() > 0.5
        scores = {}
        for name, settings in states.items():
            z = estimate_with_offset(twin, None, before.reshape(-1), lt, settings)[0]  # (M, N * MEMORY, nz)
            with torch.no_grad():
                reading = twin.net.readout(torch.as_tensor(z)).mean(0).double().numpy()  # (N * MEMORY, n_cv)
            raw = (lt.y[before.reshape(-1)].double().numpy() - reading).reshape(*before.shape, -1)
            raw[~(lt.y_mask[before.reshape(-1)].numpy() > 0.5).reshape(raw.shape)] = np.nan
            times = np.arange(MEMORY_SAMPLES, dtype=float)
            bias = np.stack([cv_bias_filter(r, times, None, period_s=1.0).value for r in raw])  # (N, n_cv)
            err = forecast_from(twin, lt, rows, z.reshape(z.shape[0], *before.shape, -1)[:, :, -1], steps).mean(0)
            err = err + np.nan_to_num(bias)[:, None, :] - truth  # (N, steps + 1, n_cv)
            scores[name] = {
                "rms": {f"h{h}": round(float(np.sqrt(np.mean(err[:, h][seen[:, h]] ** 2))), 4) for h in HORIZONS},
                "mean_h20": round(float(np.mean(err[:, 20][seen[:, 20]])), 4),
            }
        out["drifted_plant" if case.endswith("mismatch") else "nominal_plant"] = scores | {"starts": int(rows.size)}
    return out


def _chosen(lines: dict[str, dict[str, Any]]) -> str | None:
    """The grid key with the lowest h5 + h20 ratio to the encoder summed over lines, h1 not worse on any."""
    best: tuple[float, str] | None = None
    keys = [k for k in next(iter(lines.values()))["val_grid"] if k != "encoder"]
    for key in keys:
        total, ok = 0.0, True
        for out in lines.values():
            grid = out["val_grid"]
            enc, s = grid["encoder"], grid[key]
            ok &= s["h1"] <= enc["h1"]
            total += s["h5"] / enc["h5"] + s["h20"] / enc["h20"]
        if ok and (best is None or total < best[0]):
            best = (total, key)
    return best[1] if best else None


def run(*, quick: bool = False, cache: Path | None = None) -> dict[str, Any]:
    """Score the encoder's latent and the moving-horizon estimate on each demo line's validation and test segments."""
    if cache is None and os.environ.get("TWINOPS_BENCH_CALIBRATION_CACHE"):
        cache = Path(os.environ["TWINOPS_BENCH_CALIBRATION_CACHE"])
        cache.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(TwinConfig(), epochs=2, steps_per_epoch=10) if quick else TwinConfig()
    days = 1.0 if quick else DAYS
    grid = [MheSettings()] if quick else GRID
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ms per estimate as one core of the recommender's worker gives it
    try:
        twins = {line: trained(line, config, days, cache) for line in (LINES[:1] if quick else LINES)}
        lines = {line: _line(*twin_split, grid, 3 if quick else 20) for line, twin_split in twins.items()}
        drifted = _drifted(twins[LINES[0]][0], 0.1 if quick else MISMATCH_DAYS, 60 if quick else DRIFT_STARTS)
    finally:
        torch.set_num_threads(threads)
    default = MheSettings()
    return {
        "days": days,
        "default": f"{default.horizon}/{default.prior_scale:g}/{default.iterations}",
        "chosen": _chosen(lines),
        **lines,
        "drifted": drifted,
    }
