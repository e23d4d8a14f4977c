"""Interval calibration on the demo's own lines: test coverage per CV at 1, 5 and 20 steps, current floor vs a candidate.

Each line's first demo twin is trained as `twinops demo` trains it (DAYS of plantsim history with step tests, SEED,
default TwinConfig, split 70/15/15 by time), once; then its intervals are recalibrated with the current floor
(twins.uncertainty.FLOOR_SHARE: the 1-step RMS error) and a candidate (CANDIDATE_FLOOR_SHARE) and scored by
twins.evaluate, as the twin page and the promotion gate score them. Both are fitted on validation only; the test
segment only reports. `val_halves` is the check a user can make without the test segment: calibrate on one half of
validation, score the other (both ways, mean over CVs and horizons). Training takes ~8 min per line on a busy
2-core host; `cache` (a folder) keeps the trained twins between runs.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plantsim.history import generate_history
from twins import DataSplit, Record, Twin, TwinConfig, TwinDataset, evaluate, split_by_time, train_twin
from twins.promotion import COVERAGE_HORIZONS, check_coverage
from twins.uncertainty import FLOOR_SHARE, calibrate_intervals

LINES = ("vdv-reactor", "heat-train")
DAYS, SEED = 4.0, 0  # `twinops demo`'s defaults (--days, --seed)
CANDIDATE_FLOOR_SHARE = 0.25  # a smaller floor lets the ensemble spread lead (issue 12 item 1); not adopted yet:
# it raised reactor test coverage (mean 0.78 -> 0.84) but the innovation score, in band units, then withholds
# proposals of small twins on normal data (tests/platform/recommendations); its thresholds must be re-measured first


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
    """Train each demo line's twin once and report its test coverage with the current floor and the candidate."""
    config = dataclasses.replace(TwinConfig(), epochs=2, steps_per_epoch=10) if quick else TwinConfig()
    days = 1.0 if quick else DAYS
    out: dict[str, Any] = {"floor_share": FLOOR_SHARE, "candidate_floor_share": CANDIDATE_FLOOR_SHARE, "days": days}
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
    return out
