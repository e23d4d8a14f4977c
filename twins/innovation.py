"""Innovation score: how far the measured CVs are from what the twin predicted for the last few samples.

The forecast made `lookback` samples ago (encoded from the history up to then, rolled over the recorded MVs and DVs)
is compared with every CV measured since. Each error is divided by the twin's calibrated interval half-width at its
step ahead, so 1.0 is the edge of the calibrated band. A CV's score is the root mean square of its normalised errors
over the lookback; the combined score is the root mean square over CVs (a largest-CV-ratio rule raised five to ten
times more false alarms on held-out normal Tennessee Eastman data). Thresholds are conformal quantiles of the scores
of normal (validation) data at a stated false-alarm rate, fitted at training time and stored with the twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twins.data import DataSplit, TwinDataset
from twins.twin import InnovationLimits, Twin
from twins.windows import LineTensors

LOOKBACK = 5  # samples: the recent predictions scored
FALSE_ALARM_RATE = 0.01  # nominal share of normal samples that raise an alarm
MIN_SAMPLES = 30  # fewer normal validation samples than this: fit on training rows instead
CHUNK = 2048  # rows scored per forward pass


@dataclass(frozen=True)
class InnovationScore:
    """Scores of recent prediction errors at some rows, in calibrated-band units (1.0 = the band's edge)."""

    per_cv: np.ndarray  # (N, n_cv) RMS normalised innovation of each CV over the lookback; NaN if never measured
    combined: np.ndarray  # (N,) RMS of the per-CV scores over measured CVs; NaN if none was measured


def innovations(twin: Twin, lt: LineTensors, rows: np.ndarray, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """Return normalised innovations (N, L, n_cv) of the forecasts made L samples before rows, and their masks."""
    rows = np.asarray(rows, dtype=int)
    starts = rows - lookback
    if rows.size and starts.min() < 0:
        raise ValueError(f"rows need {lookback} earlier samples to be scored; the first is row {rows.min()}")
    errs, masks = [], []
    for i in range(0, rows.size, CHUNK):
        s = starts[i : i + CHUNK]
        yn = twin.forecast_normalised(lt, s, lookback).double().cpu().numpy()  # (M, n, L + 1, n_cv)
        half = twin.half_width(yn.std(0))[:, 1:]  # (n, L, n_cv) normalised
        idx = torch.as_tensor(s[:, None] + np.arange(1, lookback + 1))
        truth = lt.y[idx].double().cpu().numpy()
        mask = lt.y_mask[idx].cpu().numpy() > 0.5
        errs.append(np.where(mask, (truth - yn.mean(0)[:, 1:]) / np.maximum(half, 1e-9), np.nan))
        masks.append(mask)
    n_cv = len(twin.cv_names)
    if not errs:
        return np.zeros((0, lookback, n_cv)), np.zeros((0, lookback, n_cv), dtype=bool)
    return np.concatenate(errs), np.concatenate(masks)


def _per_cv(err: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the RMS of normalised innovations over the lookback: (N, L, n_cv) -> (N, n_cv), NaN if none measured."""
    count = mask.sum(1)
    sq = np.where(mask, err, 0.0) ** 2
    return np.where(count > 0, np.sqrt(sq.sum(1) / np.maximum(count, 1)), np.nan)


def _combined(per_cv: np.ndarray) -> np.ndarray:
    """Return the RMS over measured CVs of their scores: (N, n_cv) -> (N,), NaN if no CV was measured."""
    count = (~np.isnan(per_cv)).sum(1)
    total = np.nansum(per_cv**2, axis=1)
    return np.where(count > 0, np.sqrt(total / np.maximum(count, 1)), np.nan)


def innovation_scores(
    twin: Twin, data: TwinDataset, rows: np.ndarray, lt: LineTensors | None = None
) -> InnovationScore:
    """Score the twin's recent prediction errors at rows of a record; needs the twin's innovation limits."""
    limits = twin.innovation
    if limits is None:
        raise ValueError("the twin has no innovation limits: it was trained before they existed; retrain it")
    lt = lt or twin.tensors(data)
    err, mask = innovations(twin, lt, rows, limits.lookback)
    per_cv = _per_cv(err, mask)
    return InnovationScore(per_cv=per_cv, combined=_combined(per_cv))


def conformal_quantile(scores: np.ndarray, rate: float) -> float:
    """Return the split-conformal (1 - rate) quantile: a new normal score exceeds it with probability <= rate."""
    s = np.sort(scores[np.isfinite(scores)])
    if s.size == 0:
        return float("inf")
    rank = int(np.ceil((s.size + 1) * (1.0 - rate)))  # 1-based; beyond the sample the threshold is its max
    return float(s[min(rank, s.size) - 1])


def normal_rows(split: DataSplit, lookback: int) -> tuple[np.ndarray, str]:
    """Return the rows to fit thresholds on: validation rows (or training rows if too few) with a good lookback."""
    good = split.dataset.row_good()
    val = np.arange(split.train_stop + lookback, split.val_stop)
    val = val[good[val]]
    if val.size >= MIN_SAMPLES:
        return val, "val"
    train = np.arange(lookback, split.train_stop)
    return train[good[train]], "train"


def fit_innovation_limits(
    twin: Twin,
    split: DataSplit,
    lt: LineTensors | None = None,
    *,
    lookback: int = LOOKBACK,
    rate: float = FALSE_ALARM_RATE,
    rows: np.ndarray | None = None,
) -> InnovationLimits | None:
    """Fit per-CV and combined thresholds on normal rows (validation by default) at a false-alarm rate; None if none."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"the false-alarm rate must be in (0, 1), got {rate}")
    lt = lt or twin.tensors(split.dataset)
    source = "given"
    if rows is None:
        rows, source = normal_rows(split, lookback)
    if rows.size == 0:
        return None
    err, mask = innovations(twin, lt, rows, lookback)
    per_cv = _per_cv(err, mask)  # (N, n_cv)
    # The alarm is the combined score's; each CV's own threshold (same rate) only names the CVs that are off.
    thresholds = np.array([conformal_quantile(per_cv[:, c], rate) for c in range(per_cv.shape[1])])
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0)
    combined = conformal_quantile(_combined(per_cv), rate)
    return InnovationLimits(
        lookback=lookback,
        false_alarm_rate=rate,
        combined=combined if np.isfinite(combined) else 1.0,
        per_cv=thresholds,
        source=source,
        samples=int(rows.size),
    )
