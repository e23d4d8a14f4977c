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
    ood: OodModel,
    norm: tuple[np.ndarray, ...],
    z_now: np.ndarray,
    z_plan: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    gz: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the OOD score of each plan step (N,) and, given the latents' slopes gz, its slope (N, N * n_mv).

    Step k pairs the latent at its start with the inputs it applies, as the twin steps (z_k, u_k) -> z_k+1 and as
    its OOD statistics were fitted; the last step also scores its end latent with the setpoints the plan then holds.
    norm = (mv_mean, mv_std, dv_mean, dv_std); z_now (M, nz) the latents now, z_plan (M, nz, N) at the end of each
    step, u (n_mv, N) and d (n_dv, N) in engineering units; gz (N, nz, N * n_mv) d (mean latent at the end of step
    k) / d vec(U), vec step-major.
    """
    mv_mean, mv_std, dv_mean, dv_std = norm
    n, n_mv = u.shape[1], u.shape[0]
    u_n, d_n = (u - mv_mean[:, None]) / mv_std[:, None], (d - dv_mean[:, None]) / dv_std[:, None]
    z_mean = z_plan.mean(axis=0)  # (nz, N)
    z_start = np.hstack([z_now.mean(axis=0)[:, None], z_mean[:, :-1]])  # (nz, N)
    x = np.vstack([np.hstack([z_start, z_mean[:, -1:]]), np.hstack([u_n, u_n[:, -1:]]), np.hstack([d_n, d_n[:, -1:]])])
    x = x.T - ood.mean  # (N + 1, p): the N start pairings, then the end latent with the last setpoints
    px = x @ ood.inv_cov  # (N + 1, p), inv_cov symmetric
    dist = np.sqrt(np.maximum(np.einsum("np,np->n", px, x), 0.0))
    scores = dist / ood.q99
    pick = np.arange(n)
    pick[-1] = n - 1 if scores[n - 1] >= scores[n] else n  # the last step: the larger of its two pairings
    if gz is None:
        return scores[pick], None
    nz, nu = z_plan.shape[1], n * n_mv
    dx = np.zeros((n + 1, x.shape[1], nu))  # d x / d vec(U)
    dx[1:n, :nz] = gz[: n - 1]  # the start latent of step k is the end latent of step k - 1 (fixed for k = 0)
    dx[n, :nz] = gz[n - 1]
    for k in range(n):
        dx[k, nz + np.arange(n_mv), k * n_mv + np.arange(n_mv)] = 1.0 / mv_std
    dx[n, nz + np.arange(n_mv), (n - 1) * n_mv + np.arange(n_mv)] = 1.0 / mv_std
    coef = np.divide(px, (ood.q99 * dist)[:, None], out=np.zeros_like(px), where=dist[:, None] > 0)
    grads = np.einsum("np,npa->na", coef, dx)  # (N + 1, nu)
    return scores[pick], grads[pick]
