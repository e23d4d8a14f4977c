"""The twin's out-of-distribution score, rebuilt from its export (v2), for states and inputs along a plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OodModel:
    """Mahalanobis distance of (member-mean latent, normalised u, normalised d) from training; 1.0 = its p99."""

    mean: np.ndarray  # (nz + n_mv + n_dv,)
    inv_cov: np.ndarray  # (p, p)
    q99: float  # 99th percentile of the training distance

    def score(self, z_mean: np.ndarray, u_n: np.ndarray, d_n: np.ndarray) -> np.ndarray:
        """Score columns of member-mean latents (nz, N), normalised MVs (n_mv, N) and DVs (n_dv, N): -> (N,)."""
        x = np.vstack([z_mean, u_n, d_n]).T - self.mean  # (N, p)
        return np.sqrt(np.maximum(np.einsum("np,pq,nq->n", x, self.inv_cov, x), 0.0)) / self.q99
