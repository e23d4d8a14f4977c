"""Uncertainty bands of a plan: the twin's calibrated intervals (export v2) or, without them, k raw ensemble spreads.

Every band here has the form half = cv_std * a * sqrt(b * var_n + c) per (CV, step), var_n the ensemble's sample
variance in CV stds^2 (ddof 1). A calibrated twin (twins `Twin.half_width`) gives a = scale[h] (h = steps ahead),
b = (M - 1) / M (the twin's spread is the population std) and c = floor^2; an uncalibrated one a = k, b = 1, c = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAR_EPS = 1e-6  # added under the square root of smoothed bands, so their slope stays finite at zero spread


@dataclass(frozen=True)
class Calibration:
    """The twin's conformal interval calibration: half-width = cv_std * scale[h] * sqrt(spread_n^2 + floor^2)."""

    scale: np.ndarray  # (K, n_cv) multiplier for h = 0..K-1 steps ahead (h = 0 is the start); the last row beyond
    floor: np.ndarray  # (n_cv,) noise floor added to the ensemble spread, CV stds
    coverage: float  # nominal two-sided coverage the scales were fitted for, e.g. 0.9

    def widened(self, by: np.ndarray) -> Calibration:
        """Return this calibration with each (step ahead, CV) scale multiplied by `by` (K', n_cv), every value >= 1.

        The adaptive band (twins.adaptive): recent errors larger than calibration's widen the interval the optimizer
        enforces and the page draws. Rows past by's last use its last row, as plan_band does with scale's.
        """
        rows = np.minimum(np.arange(self.scale.shape[0]), by.shape[0] - 1)
        return Calibration(self.scale * by[rows], self.floor, self.coverage)


@dataclass(frozen=True)
class Band:
    """half = cv_std * a * sqrt(b * var_n + c) over a plan's (CV, step)."""

    a: np.ndarray  # (n_cv, N)
    b: float
    c: np.ndarray  # (n_cv, 1)

    def half(self, var_n: np.ndarray, cv_std: np.ndarray) -> np.ndarray:
        """Return the half-width (n_cv, N) in engineering units of ensemble variances var_n (n_cv, N)."""
        return cv_std[:, None] * self.a * np.sqrt(self.b * var_n + self.c)

    def slope(self, var_n: np.ndarray, cv_std: np.ndarray) -> np.ndarray:
        """Return d half / d var_n (n_cv, N); zero where the band does not depend on the spread."""
        root = np.sqrt(self.b * var_n + self.c)
        return np.divide(cv_std[:, None] * self.a * self.b / 2, root, out=np.zeros_like(root), where=root > 0)


def plan_band(
    calibration: Calibration | None, members: int, n_cv: int, horizon: int, k: float, *, smooth: bool = False
) -> Band:
    """Return the band over a plan of `horizon` steps: calibrated if the twin has a calibration, else k spreads.

    Plan column j holds the CVs at the end of step j, j + 1 steps ahead. `smooth` adds VAR_EPS under the root
    (never lowering the band) so the SQP's constraints stay differentiable.
    """
    eps = VAR_EPS if smooth else 0.0
    if calibration is not None:
        rows = np.minimum(np.arange(1, horizon + 1), calibration.scale.shape[0] - 1)
        a = calibration.scale[rows].T  # (n_cv, N)
        b = (members - 1) / members
        c = np.maximum(calibration.floor**2, eps)[:, None]
        return Band(np.array(a, dtype=float), b, c)
    if members < 2:  # a deterministic model: no spread, no band
        return Band(np.zeros((n_cv, horizon)), 0.0, np.zeros((n_cv, 1)))
    return Band(np.full((n_cv, horizon), float(k)), 1.0, np.full((n_cv, 1), eps))
