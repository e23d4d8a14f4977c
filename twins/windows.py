"""Tensors of one record for the twin: normalised, masked, with encoder windows gathered by index."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twins.data import Normalisation, TwinDataset


@dataclass(frozen=True)
class LineTensors:
    """A record in normalised units, ready for encoding and rollouts."""

    feat: torch.Tensor  # (T + W - 1, F) encoder features, W - 1 missing rows padded in front
    y: torch.Tensor  # (T, n_cv) normalised CVs, 0 where bad
    y_mask: torch.Tensor  # (T, n_cv) 1.0 where good
    u: torch.Tensor  # (T, n_mv) normalised MVs, bad samples forward-filled
    d: torch.Tensor  # (T, n_dv) normalised DVs, bad samples forward-filled
    in_ok: torch.Tensor  # (T,) 1.0 where every MV and DV is good
    window: int

    def windows(self, t: torch.Tensor, keep_from: torch.Tensor | None = None) -> torch.Tensor:
        """Gather encoder windows ending at rows t: (...,) -> (..., W * F); rows before keep_from hidden."""
        offsets = torch.arange(self.window, device=t.device)
        rows = self.feat[t.unsqueeze(-1) + offsets]  # (..., W, F); padded index t + j is row t - W + 1 + j
        if keep_from is not None:
            visible = (offsets >= keep_from.unsqueeze(-1)).to(rows.dtype)  # (..., W)
            rows = rows * visible.unsqueeze(-1)
        return rows.flatten(-2)


def _forward_fill(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace bad samples by the last good one (0 = the training mean before the first good one)."""
    out = np.where(mask, values, 0.0)
    rows = np.arange(values.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(mask, rows, -1), axis=0)  # (T, n) index of last good row
    filled = np.take_along_axis(out, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, filled, 0.0)


def line_tensors(
    data: TwinDataset, norm: Normalisation, window: int, *, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> LineTensors:
    """Normalise a record and build its encoder features; inputs enter the window one row late."""
    y = np.where(data.cv_mask, (data.cv - norm.cv_mean) / norm.cv_std, 0.0)
    u = np.where(data.mv_mask, (data.mv - norm.mv_mean) / norm.mv_std, 0.0)
    d = np.where(data.dv_mask, (data.dv - norm.dv_mean) / norm.dv_std, 0.0)
    # Row t of the features holds y_t and the inputs u_{t-1}, d_{t-1} that led to it.
    lag = np.concatenate([u, data.mv_mask, d, data.dv_mask], axis=1)
    lag = np.concatenate([np.zeros((1, lag.shape[1])), lag[:-1]], axis=0)
    feat = np.concatenate([y, data.cv_mask, lag], axis=1)
    feat = np.concatenate([np.zeros((window - 1, feat.shape[1])), feat], axis=0)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    in_ok = np.asarray(data.mv_mask.all(1) & data.dv_mask.all(1), dtype=bool)
    return LineTensors(
        feat=tensor(feat),
        y=tensor(y),
        y_mask=tensor(data.cv_mask),
        u=tensor(_forward_fill(u, data.mv_mask)),
        d=tensor(_forward_fill(d, data.dv_mask)),
        in_ok=tensor(in_ok),
        window=window,
    )
