"""Offset-free estimation: the CV bias (measured minus the twin's estimate now), filtered sample by sample.

One implementation for `bench closedloop` and the recommender, so production filters the bias exactly as the bench
evaluated it: per sample period, bias <- bias + alpha (raw - bias); a missing raw value keeps the last estimate; the
first sample, or one more than `reset_after_periods` after the estimate's last update, restarts from the raw value
(an estimate that old says nothing about the twin's error now).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIAS_ALPHA = 0.3  # about 3 samples' memory: sensor noise is damped, a drifting offset is followed within minutes
RESET_AFTER_PERIODS = 5.0  # an estimate not updated for longer than this many sample periods is restarted
MEMORY_SAMPLES = 20  # samples after which an estimate's start weighs (1 - alpha)^20 < 0.1 %: enough history to filter


@dataclass(frozen=True)
class BiasState:
    """The filtered CV bias and when each CV's estimate last took a measurement."""

    value: np.ndarray  # (n_cv,) engineering units
    at_s: np.ndarray  # (n_cv,) time of each CV's last update, seconds (any epoch, the caller's)
    restarted: np.ndarray  # (n_cv,) bool: the estimate restarted from a raw value in the last call


def cv_bias_filter(
    raw: np.ndarray,
    t_s: np.ndarray,
    previous: BiasState | None,
    *,
    period_s: float,
    alpha: float = BIAS_ALPHA,
    reset_after_periods: float = RESET_AFTER_PERIODS,
) -> BiasState:
    """Filter raw CV biases (T, n_cv) sampled at times t_s (T,) onward from `previous` (None: no estimate yet)."""
    raw = np.atleast_2d(np.asarray(raw, dtype=float))  # (T, n_cv)
    t_s = np.asarray(t_s, dtype=float).reshape(-1)  # (T,)
    if raw.shape[0] != t_s.shape[0]:
        raise ValueError(f"raw bias has {raw.shape[0]} rows but {t_s.shape[0]} times")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], not {alpha}")
    n_cv = raw.shape[1]
    if previous is None:
        value, at = np.full(n_cv, np.nan), np.full(n_cv, -np.inf)
    else:
        value, at = np.array(previous.value, dtype=float), np.array(previous.at_s, dtype=float)
    restarted = np.zeros(n_cv, dtype=bool)
    gap = reset_after_periods * period_s
    for t, row in zip(t_s, raw, strict=True):
        seen = np.isfinite(row)  # a missing measurement keeps the last estimate
        fresh = seen & (np.isfinite(value) & (t - at <= gap + 1e-9 * period_s))
        start = seen & ~fresh
        value = np.where(fresh, value + alpha * (row - value), value)
        value = np.where(start, row, value)
        at = np.where(seen, t, at)
        restarted |= start
    return BiasState(value=value, at_s=at, restarted=restarted)
