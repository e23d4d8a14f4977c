"""Innovation score: how far the measured CVs are from what the twin predicted for the last few samples.

The forecast made `lookback` samples ago (encoded from the history up to then, rolled over the recorded MVs and DVs)
is compared with every CV measured since. Each error is divided by the twin's calibrated interval half-width at its
step ahead, so 1.0 is the edge of the calibrated band. A CV's score is the root mean square of its normalised errors
over the lookback; the combined score is the root mean square over CVs (a largest-CV-ratio rule raised five to ten
times more false alarms on held-out normal Tennessee Eastman data). Thresholds are fitted at training time on the
scores of normal validation data at a stated false-alarm rate and stored with the twin.

The threshold is a prediction bound for a later period, not the quantile of the validation rows themselves. The
combined score averages many errors, so its fast noise is small and what moves it is the error level of the period
(operating point, disturbances), which drifts over hours: a quantile of one validation block of a few hours saw one
or two such periods, and normal data of another run exceeded it far more often than the stated 1 % (Tennessee
Eastman d00_te 8.7 %; three unseen runs of the simulated reactor 2.1, 9.6 and 16.6 %; bench/_faults.py's twins).
Thresholding rows the twin was trained on is worse still (TEP 15.7 %): they fit better than any later data. So the
validation scores are cut into contiguous periods and the log score is modelled as period level + noise; the
threshold is the Gaussian prediction bound of a new period's score, with Student's t for the few periods seen, and
never below the rows' own split-conformal quantile. Same twins: 4.1 %; 0.7, 4.9 and 10.4 % (85 % of the last run's
alarms fall where its MVs or DVs leave the training range: the twin extrapolates there).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from twins.data import DataSplit, TwinDataset
from twins.twin import InnovationLimits, Twin
from twins.windows import LineTensors

LOOKBACK = 5  # samples: the recent predictions scored
FALSE_ALARM_RATE = 0.01  # nominal share of normal samples that raise an alarm
MIN_SAMPLES = 30  # fewer normal validation samples than this: fit on training rows instead
CHUNK = 2048  # rows scored per forward pass
PERIODS = 8  # contiguous periods the normal rows are cut into to see how the error level moves between them


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
        # without the fitted CV offset: a sensor or plant that left the twin shows in full, not only until the
        # offset has caught up with it
        yn = twin.forecast_normalised(lt, s, lookback, offset=False).double().cpu().numpy()  # (M, n, L + 1, n_cv)
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


def student_t_quantile(p: float, dof: int) -> float:
    """Return Student's t quantile at p (Cornish-Fisher expansion in z: within 2 % for dof >= 3 and p <= 0.995)."""
    z = NormalDist().inv_cdf(p)
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def period_bound(scores: np.ndarray, rate: float, periods: int = PERIODS) -> float:
    """Return a threshold that a normal score of a new period exceeds with probability about rate (time-ordered scores).

    log score = level of its period + noise within it; the bound is mean + t(1 - rate, periods - 1) * sqrt(between
    * (1 + 1 / periods) + within), never below the split-conformal quantile. Too few scores: the conformal quantile.
    """
    s = scores[np.isfinite(scores)]
    size = s.size // periods
    if size < 2:
        return conformal_quantile(s, rate)
    logs = np.log(np.maximum(s[: size * periods], 1e-12)).reshape(periods, size)  # (P, rows per period)
    level = logs.mean(1)  # (P,)
    between = level.var(ddof=1)
    within = ((logs - level[:, None]) ** 2).sum() / (periods * (size - 1))
    spread = np.sqrt(between * (1.0 + 1.0 / periods) + within)
    bound = float(np.exp(level.mean() + student_t_quantile(1.0 - rate, periods - 1) * spread))
    return max(bound, conformal_quantile(s, rate))


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
    """Fit per-CV and combined thresholds on normal rows (validation by default) at a false-alarm rate; None if none.

    Each threshold is period_bound of the rows' scores, so rows must be in time order.
    """
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
    thresholds = np.array([period_bound(per_cv[:, c], rate) for c in range(per_cv.shape[1])])
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0)
    combined = period_bound(_combined(per_cv), rate)
    return InnovationLimits(
        lookback=lookback,
        false_alarm_rate=rate,
        combined=combined if np.isfinite(combined) else 1.0,
        per_cv=thresholds,
        source=source,
        samples=int(rows.size),
    )
