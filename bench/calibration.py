"""Interval calibration on the demo's own lines: test coverage per CV at 1, 5 and 20 steps, current floor vs a candidate.

Each line's first demo twin is trained as `twinops demo` trains it (DAYS of plantsim history with step tests, SEED,
default TwinConfig, split 70/15/15 by time), once; then its intervals are recalibrated with the current floor
(twins.uncertainty.FLOOR_SHARE: the 1-step RMS error) and a candidate (CANDIDATE_FLOOR_SHARE) and scored by
twins.evaluate, as the twin page and the promotion gate score them. Both are fitted on validation only; the test
segment only reports. `val_halves` is the check a user can make without the test segment: calibrate on one half of
validation, score the other (both ways, mean over CVs and horizons). Training takes ~8 min per line on a busy
2-core host; `cache` (a folder) keeps the trained twins between runs.

`adaptive`: a band that widens when the twin's recent errors say the calibration no longer holds (adaptive conformal
inference in the spirit of Gibbs & Candes 2021, but stateless: recomputed from recent data, so a restart loses
nothing). For each CV and step ahead k, s = clip(q90 of |k-step error| over the last ADAPT_WINDOW samples / the same
quantile on the calibration rows, 1, ADAPT_MAX), errors in calibrated-band units, only measured samples; causal (a
forecast from row t uses only forecasts made at t - k or earlier, scored by t). W and S_MAX chosen on validation
halves only (both lines, W 30/60/120 x S_MAX 2/3/5; mean |coverage - 0.90| 0.048-0.057 against 0.090 unwidened; the
best W = 120 and, within 0.001 of it, the smaller ceiling 3). Figures (`calibration.run(cache=...)`, demo twins,
test segment, h1/h5/h20 x CVs):
  reactor: min 0.685 -> 0.86, mean 0.775 -> 0.892, cells within 5 points 2/12 -> 12/12; band width x1.47
  heat train: min 0.725 -> 0.886, mean 0.868 -> 0.928, within 5 points 8/12 -> 10/12 (T_out 0.95-0.97); width x1.15
  val_halves mean |coverage - 0.90|: reactor 0.055 -> 0.041 (width x1.08), heat train 0.124 -> 0.056 (x1.18)
The first form tried, as briefed (RMS of the 1-step errors over W, one scale for all horizons), did not reach nominal:
reactor test mean 0.78 -> 0.84, h5 still 0.71-0.76 (W 30, S_MAX 3; its RMS is led by a few large errors, e.g. T_R's
validation RMS is 1.5 band units while 90 % lie inside the band, and a drifted DV's effect grows with the horizon).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plantsim.history import generate_history
from twins import DataSplit, Record, Twin, TwinConfig, TwinDataset, evaluate, split_by_time, train_twin
from twins.evaluate import HORIZONS
from twins.promotion import COVERAGE_HORIZONS, check_coverage
from twins.uncertainty import FLOOR_SHARE, calibrate_intervals, spaced

LINES = ("vdv-reactor", "heat-train")
DAYS, SEED = 4.0, 0  # `twinops demo`'s defaults (--days, --seed)
CANDIDATE_FLOOR_SHARE = 0.25  # a smaller floor lets the ensemble spread lead (issue 12 item 1); not adopted yet:
# it raised reactor test coverage (mean 0.78 -> 0.84) but the innovation score, in band units, then withholds
# proposals of small twins on normal data (tests/platform/recommendations); its thresholds must be re-measured first


ADAPT_WINDOW = 120  # samples of k-step errors in the adaptive scale's quantile (only measured ones count)
ADAPT_MAX = 3.0  # the adaptive scale's ceiling
ADAPT_WINDOW_MOST = 240  # the longest window a run may try (errors are computed that far before validation)
ADAPT_MIN_MEASURED = 10  # fewer measured errors in the window: scale 1
LEVEL = 0.9  # the quantile of |error| compared: the nominal coverage (TwinConfig.interval)


def demo_record(line_id: str, days: float = DAYS) -> TwinDataset:
    """Rebuild the record a first demo twin trains on: the demo's history as its CSV stores it (6 digits)."""
    end = datetime(2026, 12, 1, tzinfo=UTC)  # the end time only dates the rows; the seed fixes the values
    history = generate_history(line_id, days=days, start=end - timedelta(days=days), seed=SEED)
    values = np.vectorize(lambda v: float(f"{v:.6g}"))(history.values)
    tags = {t.name: t for t in history.line.tags}
    parts: dict[str, tuple[np.ndarray, list[str]]] = {}
    for role in ("CV", "MV", "DV"):
        names = sorted(c for c in history.columns if tags[c].role == role)  # the platform's order: role, name
        cols = values[:, [history.columns.index(n) for n in names]]
        low = np.array([tags[n].physical_range[0] for n in names])
        high = np.array([tags[n].physical_range[1] for n in names])
        parts[role] = (np.where((cols >= low) & (cols <= high), cols, np.nan), names)
    return TwinDataset.from_arrays(
        cv=parts["CV"][0],
        cv_names=parts["CV"][1],
        mv=parts["MV"][0],
        mv_names=parts["MV"][1],
        dv=parts["DV"][0],
        dv_names=parts["DV"][1],
        sample_period_s=history.line.sample_period_s,
    )


def recalibrated(twin: Twin, split: DataSplit, floor_share: float) -> Twin:
    """Return a copy of the twin with intervals calibrated on the split's validation rows with this floor."""
    out = copy.copy(twin)
    out.calibration = calibrate_intervals(
        twin.net, twin.config, split, twin.tensors(split.dataset), floor_share=floor_share
    )
    return out


def coverage(twin: Twin, split: DataSplit) -> dict[str, dict[str, float]]:
    """Return the test coverage per horizon key and CV, as the evaluation report gives it."""
    report = evaluate(twin, split, [], Record.build(split, twin.norm))
    return {key: {cv: round(v, 3) for cv, v in report.coverage[key].items()} for key in COVERAGE_HORIZONS}


def val_halves(twin: Twin, split: DataSplit, floor_share: float) -> float:
    """Return the mean |coverage - nominal| of calibrating on one half of validation and scoring the other."""
    data, mid = split.dataset, (split.train_stop + split.val_stop) // 2
    head = DataSplit(_rows(data, split.val_stop), split.train_stop, mid)  # calibrate on the 1st half, score the 2nd
    devs = [_dev(coverage(recalibrated(twin, head, floor_share), head), twin.config.interval)]
    tail = DataSplit(_rows(data, split.val_stop), mid, split.val_stop)  # calibrate on the 2nd half ...
    first = DataSplit(_rows(data, mid), split.train_stop, split.train_stop)  # ... and score the 1st as "test"
    devs.append(_dev(coverage(recalibrated(twin, tail, floor_share), first), twin.config.interval))
    return round(float(np.mean(devs)), 3)


def horizon_errors(twin: Twin, split: DataSplit, steps: int, start: int = 0) -> np.ndarray:
    """Return every row's k-step-ahead error in band units for k = 0..steps, (len, steps + 1, n_cv): row t, column k
    is the forecast made at t - k scored against y_t, in its calibrated half-widths (NaN where unmeasured or t < k;
    forecasts start at `start` or later, to spare the training rows)."""
    data, lt = split.dataset, twin.tensors(split.dataset)
    n, n_cv = len(data), len(data.cv_names)
    out = np.full((n, steps + 1, n_cv), np.nan)
    y = lt.y.double().cpu().numpy()
    seen = lt.y_mask.cpu().numpy() > 0.5
    for a in range(start, n - steps, 2048):  # a forecast needs its recorded inputs over all steps
        starts = np.arange(a, min(a + 2048, n - steps))
        yn = twin.forecast_normalised(lt, starts, steps).double().cpu().numpy()  # (M, n, K, n_cv)
        mean, half = yn.mean(0), twin.half_width(yn.std(0))
        for k in range(1, steps + 1):
            t = starts + k
            out[t, k] = np.where(seen[t], (y[t] - mean[:, k]) / np.maximum(half[:, k], 1e-9), np.nan)
    return out


def recent_quantile(errors: np.ndarray, rows: np.ndarray, window: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the `level` quantile of |error| over rows t - window + 1 .. t and how many were measured: (N, n_cv)."""
    a = np.abs(errors)
    pad = np.concatenate([np.full((window - 1, a.shape[1]), np.nan), a])
    win = np.lib.stride_tricks.sliding_window_view(pad, window, axis=0)[rows]  # (N, n_cv, W): causal, ends at t
    count = np.isfinite(win).sum(2)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a window with no measured error: NaN, then scale 1
        return np.nanquantile(win, level, axis=2), count


def adaptive_scale(errors: np.ndarray, rows: np.ndarray, ref: np.ndarray, window: int, s_max: float) -> np.ndarray:
    """Return the causal scale at rows: clip(recent quantile / calibration quantile, 1, s_max); 1 if too few measured."""
    q, count = recent_quantile(errors, rows, window, LEVEL)
    s = np.clip(q / np.maximum(ref, 1e-9), 1.0, s_max)
    return np.where((count >= min(ADAPT_MIN_MEASURED, window)) & np.isfinite(s), s, 1.0)


def adaptive_coverage(
    twin: Twin,
    split: DataSplit,
    window: int,
    s_max: float,
    *,
    score: tuple[int, int] | None = None,
    errs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score coverage without and with the adaptive scale on the test rows (or `score`'s); the scale's reference
    quantile is taken on the rows the twin was calibrated on (the split's validation)."""
    data, steps = split.dataset, max(HORIZONS)
    good = data.row_good()
    lo, hi = score if score else (split.val_stop, len(data))
    if errs is None:  # from the calibration or scored rows on, whichever come first, less the longest window
        errs = horizon_errors(twin, split, steps, start=max(min(lo, split.train_stop) - steps - ADAPT_WINDOW_MOST, 0))
    test = np.arange(lo, hi - steps)
    rows = spaced(test[good[test]], twin.config.eval_starts)
    fc = twin.predict(data, rows, steps)
    s = np.ones((rows.size, steps + 1, errs.shape[2]))  # (N, K, n_cv)
    for k in range(1, steps + 1):  # each horizon from its own k-step errors, all already measured at the start row
        cal = errs[split.train_stop : split.val_stop, k][good[split.train_stop : split.val_stop]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanquantile(np.abs(cal), LEVEL, axis=0)
        s[:, k] = adaptive_scale(errs[:, k], rows, ref, window, s_max)
    idx = rows[:, None] + np.arange(steps + 1)
    y, mask = data.cv[idx], data.cv_mask[idx]
    half = (fc.upper - fc.lower) / 2
    out: dict[str, Any] = {}
    for name, h in (("plain", half), ("adaptive", half * s)):
        inside = (y >= fc.mean - h) & (y <= fc.mean + h)
        out[name] = {
            f"h{k}": {
                cv: round(float(v), 3)
                for cv, v in zip(
                    data.cv_names,
                    np.where(mask[:, k], inside[:, k], False).sum(0) / np.maximum(mask[:, k].sum(0), 1),
                    strict=True,
                )
            }
            for k in HORIZONS
        }
    out["width_ratio"] = round(float((half * s)[:, 1:].sum() / half[:, 1:].sum()), 3)  # mean widened / plain width
    out["widened_share"] = round(float((s[:, 1:] > 1.0).mean()), 3)  # share of (start, step, CV) widened at all
    return out


def adaptive_val_halves(twin: Twin, split: DataSplit, window: int, s_max: float) -> dict[str, float]:
    """Calibrate (scale and reference quantile) on one half of validation, score the other, both ways: mean |dev|."""
    data, mid = split.dataset, (split.train_stop + split.val_stop) // 2
    devs: dict[str, list[float]] = {"plain": [], "adaptive": []}
    ratio = []
    for cal, scored in (
        ((split.train_stop, mid), (mid, split.val_stop)),
        ((mid, split.val_stop), (split.train_stop, mid)),
    ):
        part = DataSplit(data, *cal)
        res = adaptive_coverage(recalibrated(twin, part, FLOOR_SHARE), part, window, s_max, score=scored)
        for name in devs:
            devs[name].append(_dev(res[name], twin.config.interval))
        ratio.append(res["width_ratio"])
    return {
        "plain_mean_abs_dev": round(float(np.mean(devs["plain"])), 3),
        "adaptive_mean_abs_dev": round(float(np.mean(devs["adaptive"])), 3),
        "width_ratio": round(float(np.mean(ratio)), 3),
    }


def _rows(data: TwinDataset, stop: int) -> TwinDataset:
    return dataclasses.replace(
        data,
        **{p: getattr(data, p)[:stop] for p in ("cv", "mv", "dv", "cv_mask", "mv_mask", "dv_mask")},
    )


def _dev(cov: dict[str, dict[str, float]], nominal: float) -> float:
    return float(np.mean([abs(v - nominal) for per_cv in cov.values() for v in per_cv.values()]))


def _summary(cov: dict[str, dict[str, float]], nominal: float) -> dict[str, Any]:
    shares = np.array([v for per_cv in cov.values() for v in per_cv.values()])
    return {
        "coverage": cov,
        "min": round(float(shares.min()), 3),
        "mean": round(float(shares.mean()), 3),
        "within_5_points": round(float(np.mean(np.abs(shares - nominal) <= 0.05)), 3),
        "within_10_points": round(float(np.mean(np.abs(shares - nominal) <= 0.10)), 3),
        "gate_passes": check_coverage(cov, nominal).passed,
    }


def trained(line_id: str, config: TwinConfig, days: float, cache: Path | None) -> tuple[Twin, DataSplit]:
    """Train (or load from cache) the line's default twin on its demo record."""
    path = cache / f"{line_id}-{days:g}d.pt" if cache else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False)
        return saved["twin"], saved["split"]
    split = split_by_time(demo_record(line_id, days))
    twin = train_twin(split, config)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"twin": twin, "split": split}, path)
    return twin, split


def run(*, quick: bool = False, cache: Path | None = None) -> dict[str, Any]:
    """Train each demo line's twin once and report its test coverage with the current floor and the candidate.

    `cache` (default: env TWINOPS_BENCH_CALIBRATION_CACHE, a folder; none: train every run) keeps the trained twins,
    so `twinops bench calibration` can be rerun without ~8 min of training per line.
    """
    if cache is None and os.environ.get("TWINOPS_BENCH_CALIBRATION_CACHE"):
        cache = Path(os.environ["TWINOPS_BENCH_CALIBRATION_CACHE"])
        cache.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(TwinConfig(), epochs=2, steps_per_epoch=10) if quick else TwinConfig()
    days = 1.0 if quick else DAYS
    out: dict[str, Any] = {
        "floor_share": FLOOR_SHARE,
        "candidate_floor_share": CANDIDATE_FLOOR_SHARE,
        "adaptive_window": ADAPT_WINDOW,
        "adaptive_max": ADAPT_MAX,
        "days": days,
    }
    for line_id in LINES[:1] if quick else LINES:
        twin, split = trained(line_id, config, days, cache)
        nominal = twin.config.interval
        out[line_id] = {
            name: {
                **_summary(coverage(recalibrated(twin, split, share), split), nominal),
                "val_halves_mean_abs_dev": val_halves(twin, split, share),
            }
            for name, share in (("current", FLOOR_SHARE), ("candidate", CANDIDATE_FLOOR_SHARE))
        }
        current = recalibrated(twin, split, FLOOR_SHARE)
        test = adaptive_coverage(current, split, ADAPT_WINDOW, ADAPT_MAX)
        out[line_id]["adaptive"] = {
            "plain": _summary(test["plain"], nominal),
            "adaptive": _summary(test["adaptive"], nominal),
            "width_ratio": test["width_ratio"],
            "widened_share": test["widened_share"],
            "val_halves": adaptive_val_halves(current, split, ADAPT_WINDOW, ADAPT_MAX),
        }
    return out
