"""Adaptive band: widen the calibrated interval when the twin's recent errors say its calibration no longer holds.

Adaptive conformal inference in the spirit of Gibbs & Candes (2021), but stateless, so a restarted worker loses
nothing: for each CV and step ahead k, the scale is the nominal-coverage quantile of |k-step error| over the last
WINDOW measured samples (each error in calibrated half-widths) divided by the same quantile on the calibration rows
(Calibration.error_quantile), clipped to [1, CEILING]. It only widens; it is causal (the forecast made at t - k is
scored at t <= now). bench/calibration.py measured it on the demo twins' test segments (a drifted DV): reactor
coverage at h1/h5/h20 from 0.69-0.89 to 0.86-0.91, bands 1.47x wider on average; W and the ceiling were chosen on
validation halves only. The innovation score (twins.innovation) stays in unscaled band units: widening its
denominator would hide the very errors it is there to see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twins.data import TwinDataset
from twins.innovation import innovations
from twins.twin import Twin
from twins.windows import LineTensors

WINDOW = 120  # samples of k-step errors whose quantile is compared (only measured ones count)
CEILING = 3.0  # the largest widening
MIN_MEASURED = 10  # fewer measured errors than this for a (k, CV): scale 1 there


@dataclass(frozen=True)
class BandScale:
    """How much wider than calibrated each CV's band is drawn and enforced, per step ahead."""

    scale: np.ndarray  # (K, n_cv) multiplier of the calibrated half-width at k = 0..K-1 steps ahead, >= 1
    reason: str  # "" when measured; otherwise why every scale is 1 (an older twin, too little history)

    def per_cv(self) -> np.ndarray:
        """Return each CV's largest scale over the steps ahead: (n_cv,)."""
        return self.scale.max(0)


def history_rows(twin: Twin, window: int = WINDOW) -> int:
    """Return the samples of recent history band_scale needs: encoder window, longest step ahead and the window."""
    return twin.config.window + twin.calibration.scale.shape[0] + window


def band_scale(
    twin: Twin,
    data: TwinDataset,
    lt: LineTensors | None = None,
    *,
    window: int = WINDOW,
    ceiling: float = CEILING,
) -> BandScale:
    """Measure the adaptive scale at the last row of a recent-history record (history_rows(twin) rows or fewer)."""
    cal = twin.calibration
    steps, n_cv = cal.scale.shape[0], len(twin.cv_names)
    ones = np.ones((steps, n_cv))
    if cal.error_quantile is None:
        return BandScale(ones, "not widened: the twin was calibrated before recent errors could widen its band")
    lt = lt or twin.tensors(data)
    last = len(data) - 1
    scale = ones.copy()
    for k in range(1, steps):
        rows = np.arange(max(last - window + 1, k), last + 1)  # rows whose k-step forecast (made at t - k) is in
        if rows.size < MIN_MEASURED:
            break  # too little history for this step ahead and every longer one: they stay at 1
        err, mask = innovations(twin, lt, rows, k)  # (N, k, n_cv): the forecast made at t - k, steps 1..k
        e = np.where(mask[:, -1], np.abs(err[:, -1]), np.nan)  # (N, n_cv) k-step errors
        count = mask[:, -1].sum(0)
        if not np.any(count >= MIN_MEASURED):
            continue
        q = np.nanquantile(np.where(count >= MIN_MEASURED, e, 1.0), twin.config.interval, axis=0)
        scale[k] = np.where(count >= MIN_MEASURED, np.clip(q / np.maximum(cal.error_quantile[k], 1e-9), 1, ceiling), 1)
    scale[0] = scale[1] if steps > 1 else 1.0  # step 0 is the start row: as wide as the first step
    measured = int(data.cv_mask[max(last - window + 1, 0) :].any(axis=1).sum())  # a window may hold empty rows
    if measured < window:
        return BandScale(scale, f"measured from {measured} samples of history, fewer than the {window} it reads")
    return BandScale(scale, "")
