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
from twins import DataSplit, Record, Twin, TwinConfig
from twins.estimation import MheSettings, estimate_latent, forecast_from
from twins.evaluate import HORIZONS, _nrmse
from twins.uncertainty import spaced
from twins.windows import LineTensors

STARTS = 1000  # forecast starts per segment, evenly spaced (as twins.evaluate)
GRID = [
    MheSettings(horizon=h, prior_scale=p, iterations=i)
    for h, p, i in itertools.product((2, 4, 8, 16), (0.1, 0.3, 1.0), (1, 2))
]
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
    estimate_latent(twin, split.dataset, one, lt, settings)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        estimate_latent(twin, split.dataset, one, lt, settings)
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
        return _score(twin, lt, rec, rows, estimate_latent(twin, data, rows, lt, settings))

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
        lines = {
            line: _line(*trained(line, config, days, cache), grid, 3 if quick else 20)
            for line in (LINES[:1] if quick else LINES)
        }
    finally:
        torch.set_num_threads(threads)
    default = MheSettings()
    return {
        "days": days,
        "default": f"{default.horizon}/{default.prior_scale:g}/{default.iterations}",
        "chosen": _chosen(lines),
        **lines,
    }
