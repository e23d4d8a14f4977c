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
forecast from row t uses only forecasts made at t - k or earlier, scored by t). The scale is production's own,
twins.adaptive.scale_series (band_scale at every scored row), so what this bench measures is what the twin page, the
promotion gate and the optimizer use. W and S_MAX chosen on validation
halves only (both lines, W 30/60/120 x S_MAX 2/3/5; mean |coverage - 0.90| 0.048-0.057 against 0.090 unwidened; the
best W = 120 and, within 0.001 of it, the smaller ceiling 3). Figures (`calibration.run(cache=...)`, demo twins,
test segment, h1/h5/h20 x CVs; the reference quantile is Calibration.error_quantile since the scale is production's):
  reactor: min 0.685 -> 0.865, mean 0.775 -> 0.891, cells within 5 points 2/12 -> 12/12; band width x1.46
  heat train: min 0.725 -> 0.882, mean 0.868 -> 0.929, within 5 points 12/18 -> 14/18 (T_out 0.95-0.97); width x1.16
  val_halves mean |coverage - 0.90|: reactor 0.055 -> 0.039 (width x1.09), heat train 0.124 -> 0.053 (x1.19)
Both lines' adaptive coverage lies within the promotion gate's 0.80-1.00 everywhere (gate_passes), the plain band's
does not: the gate judges the adaptive band and blocks (twins.promotion.COVERAGE_BLOCKS).
The first form tried, as briefed (RMS of the 1-step errors over W, one scale for all horizons), did not reach nominal:
reactor test mean 0.78 -> 0.84, h5 still 0.71-0.76 (W 30, S_MAX 3; its RMS is led by a few large errors, e.g. T_R's
validation RMS is 1.5 band units while 90 % lie inside the band, and a drifted DV's effect grows with the horizon).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plantsim.history import generate_history
from twins import DataSplit, Record, Twin, TwinConfig, TwinDataset, evaluate, split_by_time, train_twin
from twins.adaptive import CEILING, WINDOW, scale_series
from twins.evaluate import HORIZONS
from twins.promotion import COVERAGE_HORIZONS, check_coverage
from twins.uncertainty import FLOOR_SHARE, calibrate_intervals, spaced

LINES = ("vdv-reactor", "heat-train")
DAYS, SEED = 4.0, 0  # `twinops demo`'s defaults (--days, --seed)
CANDIDATE_FLOOR_SHARE = 0.25  # a smaller floor lets the ensemble spread lead (issue 12 item 1); not adopted yet:
# it raised reactor test coverage (mean 0.78 -> 0.84) but the innovation score, in band units, then withholds
# proposals of small twins on normal data (tests/platform/recommendations); its thresholds must be re-measured first


ADAPT_WINDOW, ADAPT_MAX = WINDOW, CEILING  # the adaptive band's window and ceiling as production uses them


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
        twin.forecast_normalised, twin.config, split, twin.tensors(split.dataset), floor_share=floor_share
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


def adaptive_coverage(
    twin: Twin, split: DataSplit, window: int, s_max: float, *, score: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Score coverage without and with the adaptive scale (twins.adaptive.scale_series, as production draws it) on
    the test rows (or `score`'s); the scale's reference is the twin's Calibration.error_quantile."""
    data, steps = split.dataset, max(HORIZONS)
    good = data.row_good()
    lo, hi = score if score else (split.val_stop, len(data))
    test = np.arange(lo, hi - steps)
    rows = spaced(test[good[test]], twin.config.eval_starts)
    lt = twin.tensors(data)
    fc = twin.predict(data, rows, steps, lt)
    s = scale_series(twin, data, rows, lt, steps=steps, window=window, ceiling=s_max)  # (N, K, n_cv)
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
