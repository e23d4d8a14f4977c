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


def plan_ood(
    ood: OodModel, dyn_norm: tuple[np.ndarray, ...], z_now: np.ndarray, z_plan: np.ndarray, u: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """Return the OOD score of each plan step (N,): the larger of its start and end latent with its inputs.

    dyn_norm = (mv_mean, mv_std, dv_mean, dv_std); z_now (M, nz) the latents now, z_plan (M, nz, N) at the end of
    each step, u (n_mv, N) and d (n_dv, N) in engineering units. Step k applies u[k] from latent z_k to reach
    z_{k+1}: both pairings are scored, so a plan is judged on every state and input combination it relies on.
    """
    mv_mean, mv_std, dv_mean, dv_std = dyn_norm
    u_n, d_n = (u - mv_mean[:, None]) / mv_std[:, None], (d - dv_mean[:, None]) / dv_std[:, None]
    z_mean = z_plan.mean(axis=0)  # (nz, N)
    z_start = np.hstack([z_now.mean(axis=0)[:, None], z_mean[:, :-1]])
    return np.maximum(ood.score(z_start, u_n, d_n), ood.score(z_mean, u_n, d_n))
