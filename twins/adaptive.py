"""Adaptive band: widen the calibrated interval when the twin's recent errors say its calibration no longer holds.

Adaptive conformal inference in the spirit of Gibbs & Candes (2021), but stateless, so a restarted worker loses
nothing: for each CV and step ahead k, the scale is the nominal-coverage quantile of |k-step error| over the last
WINDOW measured samples (each error in calibrated half-widths) divided by the same quantile on the calibration rows
(Calibration.error_quantile), clipped to [1, CEILING]. It only widens; it is causal (the forecast made at t - k is
scored at t <= now). bench/calibration.py measured it on the demo twins' test segments (a drifted DV): reactor
coverage at h1/h5/h20 from 0.69-0.89 to 0.87-0.91, bands 1.46x wider on average; W and the ceiling were chosen on
validation halves only. The innovation score (twins.innovation) stays in unscaled band units: widening its
denominator would hide the very errors it is there to see.

band_scale measures the scale at the last row of recent history (production); scale_series measures the same at every
row of a segment at once (twins.evaluate's test coverage, which the promotion gate judges, and bench/calibration.py);
tests/twins/test_adaptive.py holds the two equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from twins.data import TwinDataset
from twins.innovation import CHUNK
from twins.twin import Twin
from twins.windows import LineTensors

WINDOW = 120  # samples of k-step errors whose quantile is compared (only measured ones count)
CEILING = 3.0  # the largest widening
MIN_MEASURED = 10  # fewer measured errors than this for a (k, CV): scale 1 there
# Forecast starts made between progress reports in scale_series. Over a demo line's test segment it makes ~5,500
# forecasts, each from a fitted state estimate: about 4 minutes on one free core, the most of a twin's evaluation.
PROGRESS_STARTS = 512
Progress = Callable[[int, int], None]  # told (forecast starts made, of how many) as scale_series goes


@dataclass(frozen=True)
class BandScale:
    """How much wider than calibrated each CV's band is drawn and enforced, per step ahead."""

    scale: np.ndarray  # (K, n_cv) multiplier of the calibrated half-width at k = 0..K-1 steps ahead, >= 1
    reason: str  # "" when measured; otherwise why every scale is 1 (an older twin, too little history)

    def per_cv(self) -> np.ndarray:
        """Return each CV's largest scale over the steps ahead: (n_cv,)."""
        return self.scale.max(0)


def history_rows(twin: Twin, window: int = WINDOW, steps: int | None = None) -> int:
    """Return the samples of recent history band_scale needs: encoder window, longest step ahead and the window."""
    return twin.state_rows + (twin.calibration.scale.shape[0] - 1 if steps is None else steps) + 1 + window


def band_scale(
    twin: Twin,
    data: TwinDataset,
    lt: LineTensors | None = None,
    *,
    window: int = WINDOW,
    ceiling: float = CEILING,
    steps: int | None = None,
) -> BandScale:
    """Measure the adaptive scale at the last row of a recent-history record (history_rows(twin) rows or fewer).

    `steps`: the steps ahead a caller uses (an optimizer's horizon), 0..steps measured; None: every one calibrated.

    scale_series does the work (one forecast per start row, about 0.4 s for a demo twin's 120 steps ahead; the
    forecast per step ahead it replaced took 40-80 s); tests/twins/test_adaptive.py holds it equal to that definition.
    """
    cal = twin.calibration
    steps = cal.scale.shape[0] - 1 if steps is None else min(steps, cal.scale.shape[0] - 1)
    if cal.error_quantile is None:
        return BandScale(
            np.ones((steps + 1, len(twin.cv_names))),
            "not widened: the twin was calibrated before recent errors could widen its band",
        )
    last = len(data) - 1
    scale = scale_series(twin, data, np.array([last]), lt, steps=steps, window=window, ceiling=ceiling)[0]
    measured = int(data.cv_mask[max(last - window + 1, 0) :].any(axis=1).sum())  # a window may hold empty rows
    if measured < window:
        return BandScale(scale, f"measured from {measured} samples of history, fewer than the {window} it reads")
    return BandScale(scale, "")


def scale_series(
    twin: Twin,
    data: TwinDataset,
    rows: np.ndarray,
    lt: LineTensors | None = None,
    *,
    steps: int | None = None,
    window: int = WINDOW,
    ceiling: float = CEILING,
    on_progress: Progress | None = None,
) -> np.ndarray:
    """Return the scale band_scale measures with each row as the last of its history: (N,) -> (N, steps + 1, n_cv).

    Vectorised over rows (one forecast per start, not one per start and step ahead), for scoring the adaptive band
    over a segment; steps (default: every step ahead the calibration has) may stop early, each k is independent.
    on_progress is told how many of the forecast starts are made, every PROGRESS_STARTS and at the end.
    """
    cal = twin.calibration
    steps = cal.scale.shape[0] - 1 if steps is None else steps
    rows = np.asarray(rows, dtype=int)
    out = np.ones((rows.size, steps + 1, len(twin.cv_names)))
    if cal.error_quantile is None or rows.size == 0 or steps < 1:
        return out
    if steps >= cal.scale.shape[0]:
        raise ValueError(f"the twin's calibration covers {cal.scale.shape[0] - 1} steps ahead, not {steps}")
    lt = lt or twin.tensors(data)
    lo = max(int(rows.min()) - window + 1, 0)
    errors = _step_errors(twin, lt, rows, steps, window, lo, on_progress)  # (max(rows) - lo + 1, steps + 1, n_cv)
    pad = np.full((window - 1, *errors.shape[1:]), np.nan)
    recent = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, np.abs(errors)]), window, axis=0)
    for k in range(1, steps + 1):
        win = recent[rows - lo, k]  # (N, n_cv, W): the k-step errors scored at rows t - W + 1 .. t
        count = np.isfinite(win).sum(2)
        enough = count >= MIN_MEASURED
        q = np.nanquantile(np.where(enough[..., None], win, 1.0), twin.config.interval, axis=2)
        out[:, k] = np.where(enough, np.clip(q / np.maximum(cal.error_quantile[k], 1e-9), 1, ceiling), 1)
    out[:, 0] = out[:, 1]  # step 0 is the start row: as wide as the first step, as band_scale draws it
    return out


def _step_errors(
    twin: Twin,
    lt: LineTensors,
    rows: np.ndarray,
    steps: int,
    window: int,
    lo: int,
    on_progress: Progress | None = None,
) -> np.ndarray:
    """Return k-step errors in band units for rows lo..max(rows): row t, column k is the forecast made at t - k.

    Only the forecasts the windows ending at `rows` read are made; every other entry (and t < k, unmeasured) is NaN,
    as is every forecast whose encoder window or path spans a gap (a row with no CV measured): across a collector
    outage or a restart the error measures the data's discontinuity, not the twin (in `twinops demo` the live plant
    starts where the history's last step test did not leave it, and every forecast across that widened the band x3).
    """
    hi = int(rows.max())
    wanted = np.zeros(hi + 1, dtype=bool)  # forecast starts: t - k for t in a window, k = 1..steps
    for r in np.unique(rows):
        wanted[max(r - window + 1 - steps, 0) : r] = True
    starts = np.flatnonzero(wanted)
    # The inputs past the record's end only feed steps whose target lies past it, which are dropped: pad to roll.
    ext = dataclasses.replace(
        lt, u=torch.cat([lt.u, lt.u[-1:].expand(steps, -1)]), d=torch.cat([lt.d, lt.d[-1:].expand(steps, -1)])
    )
    y = lt.y.double().cpu().numpy()
    seen = lt.y_mask.cpu().numpy() > 0.5
    gaps = np.concatenate([[0], np.cumsum(~seen.any(axis=1))])  # gaps[b] - gaps[a]: gap rows in a..b-1
    out = np.full((hi - lo + 1, steps + 1, len(twin.cv_names)), np.nan)
    chunk = min(CHUNK, PROGRESS_STARTS)
    for i in range(0, starts.size, chunk):
        s = starts[i : i + chunk]
        yn = twin.forecast_normalised(ext, s, steps).double().cpu().numpy()  # (M, n, steps + 1, n_cv)
        mean, half = yn.mean(0), twin.half_width(yn.std(0))
        for k in range(1, steps + 1):
            first = np.maximum(s - twin.state_rows + 1, 0)  # the first row the state reads
            keep = (s + k >= lo) & (s + k <= hi) & (gaps[np.minimum(s + k + 1, len(seen))] == gaps[first])
            t = s[keep] + k
            err = (y[t] - mean[keep, k]) / np.maximum(half[keep, k], 1e-9)
            out[t - lo, k] = np.where(seen[t], err, np.nan)
        if on_progress is not None:
            on_progress(i + s.size, starts.size)
    return out
