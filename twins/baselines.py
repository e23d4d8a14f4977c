"""Baselines always reported beside the twin: persistence and a least-squares ARX model with free-run simulation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twins.data import DataSplit, Normalisation
from twins.windows import _forward_fill


@dataclass(frozen=True)
class Record:
    """A record in a baseline's normalised units; bad samples forward-filled, mask kept for scoring."""

    y: np.ndarray  # (T, n_cv)
    y_mask: np.ndarray  # (T, n_cv) bool
    u: np.ndarray  # (T, n_mv)
    d: np.ndarray  # (T, n_dv)
    row_good: np.ndarray  # (T,) bool

    @classmethod
    def build(cls, split: DataSplit, norm: Normalisation) -> Record:
        """Normalise the split's record with the given statistics."""
        data = split.dataset
        y = _forward_fill((data.cv - norm.cv_mean) / norm.cv_std, data.cv_mask)
        u = _forward_fill((data.mv - norm.mv_mean) / norm.mv_std, data.mv_mask)
        d = _forward_fill((data.dv - norm.dv_mean) / norm.dv_std, data.dv_mask)
        return cls(y, data.cv_mask, u, d, data.row_good())


class Persistence:
    """Predict that every CV stays at its last value."""

    name = "persistence"

    def forecast(self, rec: Record, rows: np.ndarray, steps: int) -> np.ndarray:
        """Forecast normalised CVs from rows: (N,) -> (N, steps + 1, n_cv)."""
        return np.repeat(rec.y[rows][:, None], steps + 1, axis=1)


@dataclass(frozen=True)
class LinearARX:
    """y_t = sum_i A_i y_{t-i} + sum_j B_j [u, d]_{t-j} + c, fitted by least squares in normalised units."""

    na: int  # CV lags
    nb: int  # input lags
    theta: np.ndarray  # (na * n_cv + nb * (n_mv + n_dv) + 1, n_cv)
    name: str = "linear_arx"

    @staticmethod
    def _regressors(y_hist: np.ndarray, x_hist: np.ndarray) -> np.ndarray:
        """Stack lags, newest first: (N, na, n_cv), (N, nb, n_x) -> (N, p)."""
        n = y_hist.shape[0]
        return np.concatenate([y_hist.reshape(n, -1), x_hist.reshape(n, -1), np.ones((n, 1))], axis=1)

    @classmethod
    def fit(cls, rec: Record, stop: int, na: int, nb: int, ridge: float = 1e-6) -> LinearARX:
        """Fit on targets in rows [max(na, nb), stop) whose lags are all good."""
        lag = max(na, nb)
        t = np.arange(lag, stop)
        good = np.ones(t.size, bool)
        for k in range(lag + 1):
            good &= rec.row_good[t - k]
        t = t[good]
        x = np.concatenate([rec.u, rec.d], axis=1)
        y_hist = np.stack([rec.y[t - i] for i in range(1, na + 1)], axis=1)
        x_hist = np.stack([x[t - j] for j in range(1, nb + 1)], axis=1)
        phi = cls._regressors(y_hist, x_hist)
        theta = np.linalg.solve(phi.T @ phi + ridge * len(t) * np.eye(phi.shape[1]), phi.T @ rec.y[t])
        return cls(na, nb, theta)

    def forecast(self, rec: Record, rows: np.ndarray, steps: int) -> np.ndarray:
        """Simulate from the recorded past at rows with recorded inputs: (N,) -> (N, steps + 1, n_cv)."""
        x = np.concatenate([rec.u, rec.d], axis=1)
        y_hist = np.stack([rec.y[np.maximum(rows - i, 0)] for i in range(self.na)], axis=1)  # (N, na, n_cv)
        x_hist = np.stack([x[np.maximum(rows - 1 - j, 0)] for j in range(self.nb)], axis=1)  # inputs before rows
        out = [rec.y[rows]]
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(steps):
                x_hist = np.concatenate([x[rows + k][:, None], x_hist[:, :-1]], axis=1)
                y = self._regressors(y_hist, x_hist) @ self.theta  # (N, n_cv)
                y_hist = np.concatenate([y[:, None], y_hist[:, :-1]], axis=1)
                out.append(y)
        return np.stack(out, axis=1)


def fit_linear(rec: Record, split: DataSplit, max_order: int = 4) -> LinearARX:
    """Fit ARX models of orders 1..max_order and keep the best free-run on validation (training if none)."""
    lo, hi = split.train_stop, split.val_stop
    if hi - lo < 50:
        lo, hi = 0, split.train_stop
    start = lo + int(np.argmax(rec.row_good[lo:hi]))
    best: tuple[float, LinearARX] | None = None
    for na in range(1, max_order + 1):
        for nb in range(1, max_order + 1):
            model = LinearARX.fit(rec, split.train_stop, na, nb)
            sim = model.forecast(rec, np.array([start]), hi - 1 - start)[0]  # (steps + 1, n_cv)
            mask = rec.y_mask[start:hi]
            err = float(np.mean((sim - rec.y[start:hi])[mask] ** 2))
            if not np.isfinite(err):
                continue
            if best is None or err < best[0]:
                best = (err, model)
    return best[1] if best is not None else LinearARX.fit(rec, split.train_stop, 1, 1)
