"""DV forecasts over the horizon: each measured disturbance decays toward its mean (AR(1)), or is held.

d(k) = mean + phi^k (d_now - mean), k = 1..N steps ahead, fitted per DV on the line's history. phi = 1 is "hold",
the old behaviour and the fallback whenever the history does not show that decay forecasts better: too few
consecutive good samples, or a held-out last part of the history where the decay's multi-step error is not below
hold's. Two estimates of phi are tried: the lag-1 autocorrelation, and the decay of the autocorrelation over lags
1..L (robust to sensor noise, which lowers the lag-1 value without making the disturbance itself decay faster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_PAIRS = 200  # consecutive good sample pairs needed to fit a DV's mean and decay
HELD_OUT = 0.25  # last share of the history that decides between decay and hold
MAX_LAG = 20  # autocorrelation lags of the multi-lag estimate of phi


@dataclass(frozen=True)
class DvForecastModel:
    """Per-DV forecast parameters, in the line's DV order."""

    names: tuple[str, ...]
    mean: np.ndarray  # (n_dv,) engineering units
    phi: np.ndarray  # (n_dv,) decay per sample period in [0, 1]; 1 = hold
    method: tuple[str, ...]  # per DV: "hold", "decay (lag-1)" or "decay (multi-lag)"
    why: tuple[str, ...]  # per DV: what the held-out history showed, in words

    @classmethod
    def hold(cls, names: Sequence[str], why: str) -> DvForecastModel:
        """Return the model that holds every DV at its current value."""
        n = len(names)
        return cls(tuple(names), np.zeros(n), np.ones(n), ("hold",) * n, (why,) * n)

    def record(self) -> dict[str, dict[str, object]]:
        """Return the parameters by DV name, as plain data for a proposal's inputs."""
        return {
            name: {"method": m, "mean": float(mu), "phi": float(p), "why": w}
            for name, mu, p, m, w in zip(self.names, self.mean, self.phi, self.method, self.why, strict=True)
        }


def dv_forecast(model: DvForecastModel, d_now: Mapping[str, float], steps: int) -> dict[str, list[float]]:
    """Return each DV's forecast for steps 1..steps from its current value (NaN stays NaN: the caller decides)."""
    k = np.arange(1, steps + 1)  # (N,)
    out = {}
    for i, name in enumerate(model.names):
        now = float(d_now[name])
        out[name] = (model.mean[i] + model.phi[i] ** k * (now - model.mean[i])).tolist()
    return out


def multistep_rmse(d: np.ndarray, mean: float, phi: float, horizons: Sequence[int]) -> np.ndarray:
    """Return the RMSE of forecasting d (T,) h steps ahead from every good sample: (len(horizons),), NaN if none."""
    out = np.full(len(horizons), np.nan)
    for j, h in enumerate(horizons):
        if h >= len(d):
            continue
        now, later = d[:-h], d[h:]
        ok = np.isfinite(now) & np.isfinite(later)
        if ok.any():
            pred = mean + phi**h * (now[ok] - mean)
            out[j] = float(np.sqrt(np.mean((later[ok] - pred) ** 2)))
    return out


def _autocorrelation(d: np.ndarray, mean: float, lag: int) -> tuple[float, int]:
    """Return the lag autocorrelation of d's deviations over pairs of good samples, and how many pairs."""
    if lag >= len(d):
        return float("nan"), 0
    a, b = d[:-lag] - mean, d[lag:] - mean
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 2:
        return float("nan"), n
    var = float(np.sqrt(np.mean(a[ok] ** 2) * np.mean(b[ok] ** 2)))
    return (float(np.mean(a[ok] * b[ok])) / var if var > 0 else float("nan")), n


def _phis(d: np.ndarray, mean: float) -> dict[str, float]:
    """Return the candidate decays of d: from the lag-1 autocorrelation and from lags 1..MAX_LAG; each in [0, 1)."""
    out = {}
    r1, _ = _autocorrelation(d, mean, 1)
    if np.isfinite(r1):
        out["decay (lag-1)"] = float(np.clip(r1, 0.0, 1.0 - 1e-9))
    lags = np.arange(1, MAX_LAG + 1)
    r = np.array([_autocorrelation(d, mean, int(k))[0] for k in lags])
    ok = np.isfinite(r) & (r > 0.05)
    if ok.sum() >= 3:
        slope = np.polyfit(lags[ok], np.log(r[ok]), 1)[0]  # log r(k) = log c + k log phi; c < 1 is sensor noise
        out["decay (multi-lag)"] = float(np.clip(np.exp(slope), 0.0, 1.0 - 1e-9))
    return out


def dv_forecast_fit(history: np.ndarray, names: Sequence[str], horizon: int) -> DvForecastModel:
    """Fit each DV's forecast on its history (T, n_dv) at the sample period, NaN where a sample was bad."""
    history = np.asarray(history, dtype=float).reshape(len(history), len(names))
    fits = [_fit_one(history[:, i], horizon) for i in range(len(names))]
    return DvForecastModel(
        tuple(names),
        np.array([f[0] for f in fits]),
        np.array([f[1] for f in fits]),
        tuple(f[2] for f in fits),
        tuple(f[3] for f in fits),
    )


def _fit_one(d: np.ndarray, horizon: int) -> tuple[float, float, str, str]:
    """Return (mean, phi, method, why) of one DV's history (T,): decay only where it beat hold on held-out data."""
    horizons = list(range(1, horizon + 1))
    split = int(round(len(d) * (1.0 - HELD_OUT)))
    fit, held = d[:split], d[split:]
    pairs = _autocorrelation(fit, 0.0, 1)[1]
    checks = _autocorrelation(held, 0.0, min(horizon, max(1, len(held) - 1)))[1]
    if pairs < MIN_PAIRS or checks < MIN_PAIRS // 4:
        return (
            0.0,
            1.0,
            "hold",
            (
                f"held: {pairs} pairs of consecutive good samples to fit on and {checks} to check on "
                f"(needs {MIN_PAIRS} and {MIN_PAIRS // 4})"
            ),
        )
    mu = float(np.nanmean(fit))
    hold = float(np.nanmean(multistep_rmse(held, mu, 1.0, horizons)))
    best, best_error = "hold", hold
    for name, p in _phis(fit, mu).items():
        error = float(np.nanmean(multistep_rmse(held, mu, p, horizons)))
        if error < best_error:
            best, best_error = name, error
    if best == "hold":
        return (
            0.0,
            1.0,
            "hold",
            (
                f"held: decay toward the mean did not beat hold on the held-out history (RMSE over 1..{horizon} "
                f"steps {hold:.4g})"
            ),
        )
    mu_all = float(np.nanmean(d))  # chosen on the held-out part, refitted on all of it
    phi = _phis(d, mu_all).get(best, 1.0)
    return mu_all, phi, best, f"{best}: held-out RMSE over 1..{horizon} steps {best_error:.4g}, hold's {hold:.4g}"
