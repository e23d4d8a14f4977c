"""Moving-horizon estimate of the latent state: the encoder's latent corrected to fit the CVs measured since.

The encoder infers each member's latent from a window of history, but nothing makes that latent agree with the
twin's own dynamics: rolled forward, it misses the CVs it has just seen. The estimate here takes each member's
encoder latent at `horizon` samples before the row as a prior, and moves it (Gauss-Newton on a least-squares
moving-horizon objective) so that the member's rollout over the recorded MVs and DVs fits the CVs measured over the
horizon; the latent at the row is the end of that rollout:

    min_z0  sum_k sum_c ((readout(z_k) - y_k) / r_c)^2 + sum_j ((z0 - z_enc)_j / (prior_scale * z_std_j))^2
    z_{k+1} = next(z_k, u_k, d_k),  k = 0 .. horizon - 1,  z_row = z_horizon

r is the twin's 1-step RMS error on its calibration rows (Calibration.floor), z_std the member's training latent
spread. Each member is estimated on its own: members do not share a latent space, so the ensemble cannot supply a
latent-readout covariance as an ensemble Kalman filter would.

Settings chosen on the validation segments of both demo lines only (horizon 2/4/8/16 x prior_scale 0.1/0.3/1 x 1-2
steps; the best h5 + h20 ratio to the encoder summed over both lines, h1 not worse), then scored on the test
segments once (`twinops bench estimation`; NRMSE mean over CVs, 1000 starts; encoder -> moving horizon):
  reactor:    h1 0.220 -> 0.179, h5 0.184 -> 0.123, h20 0.183 -> 0.174
  heat train: h1 0.145 -> 0.084, h5 0.148 -> 0.100, h20 0.131 -> 0.110
Rolling the encoder's latent of 16 samples earlier forward without the fit gets a quarter to a half of the h5 gain.
The fit trusts the twin's dynamics: on a weak twin (the tests' tiny two-tank twin, 8 epochs) it still halves the h1
and h5 errors but its h20 error grows (0.037 -> 0.050), so a caller should keep it per twin only where it wins on that
twin's validation segment. Cost: ~60-120 ms per estimate of all five members on one busy CPU core (encoder < 1 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import jvp, vmap

from twins.data import TwinDataset
from twins.twin import Twin
from twins.windows import LineTensors

DAMPING = 1e-3  # Levenberg-Marquardt damping of the Gauss-Newton normal equations, in prior units


@dataclass(frozen=True)
class MheSettings:
    """Settings of the moving-horizon latent estimate (chosen on validation, see the module docstring)."""

    horizon: int = 16  # samples of measured CVs fitted, ending at the estimate's row; 0 = the encoder's latent
    prior_scale: float = 1.0  # prior sd of the horizon-start latent about the encoder's, in training latent sds
    iterations: int = 2  # Gauss-Newton steps; each is kept only where it lowers the member's objective

    def __post_init__(self) -> None:
        if self.horizon < 0 or self.iterations < 0:
            raise ValueError(f"horizon and iterations must be >= 0, got {self.horizon}, {self.iterations}")
        if not self.prior_scale > 0:
            raise ValueError(f"prior_scale must be > 0, got {self.prior_scale}")


def _rollout_cv(twin: Twin, z0: torch.Tensor, u: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll latents and read CVs out: (M, N, nz), (M, N, L, n_mv), (M, N, L, n_dv) -> (M, N, L + 1, n_cv), (M, N, nz)."""
    z = twin.net.rollout(z0, u, d)  # (M, N, L + 1, nz)
    m, n = z.shape[:2]
    return twin.net.readout(z.flatten(1, 2)).view(m, n, z.shape[2], -1), z[:, :, -1]


@torch.no_grad()
def estimate_latent(
    twin: Twin,
    data: TwinDataset,
    rows: np.ndarray,
    lt: LineTensors | None = None,
    settings: MheSettings | None = None,
) -> np.ndarray:
    """Estimate each member's latent at rows from the encoder and the CVs measured before: (N,) -> (M, N, nz)."""
    settings = settings or MheSettings()
    lt = lt or twin.tensors(data)
    net, m = twin.net, twin.config.members
    rows_t = torch.as_tensor(np.asarray(rows, dtype=int), device=lt.y.device)
    encoded = net.encode_at(lt, rows_t)  # (M, N, nz) the fallback where the fit fails
    horizon = min(settings.horizon, int(rows_t.min()) if rows_t.numel() else 0)  # short records: a shorter horizon
    if horizon == 0 or settings.iterations == 0:
        return encoded.cpu().numpy()

    # ---- data over the horizon: inputs u_k, d_k (k < L) and measured CVs y_k (k <= L), normalised
    start = rows_t - horizon
    steps = start.unsqueeze(-1) + torch.arange(horizon + 1, device=rows_t.device)  # (N, L + 1)
    u = lt.u[steps[:, :-1]].expand(m, -1, -1, -1)  # (M, N, L, n_mv)
    d = lt.d[steps[:, :-1]].expand(m, -1, -1, -1)
    y, seen = lt.y[steps], lt.y_mask[steps]  # (N, L + 1, n_cv)
    r = torch.as_tensor(twin.calibration.floor, dtype=y.dtype, device=y.device)  # (n_cv,) 1-step RMS error
    prior = net.encode_at(lt, start)  # (M, N, nz)
    sd = torch.as_tensor(twin.z_std * settings.prior_scale, dtype=y.dtype, device=y.device).unsqueeze(1) + 1e-6

    # ---- objective as a residual vector per member and row: measured CV errors, then the prior
    def residuals(z0: torch.Tensor) -> torch.Tensor:
        cv, _ = _rollout_cv(twin, z0, u, d)
        return torch.cat([((cv - y) * seen / r).flatten(2), (z0 - prior) / sd], dim=-1)  # (M, N, R)

    # ---- Gauss-Newton: Jacobian columns by forward-mode AD, one per latent direction, in one batched pass
    nz = prior.shape[-1]
    eye = torch.eye(nz, dtype=y.dtype, device=y.device)
    z0 = prior.clone()
    res = residuals(z0)
    for _ in range(settings.iterations):
        cols = vmap(lambda v, z=z0: jvp(residuals, (z,), (v,))[1])(eye[:, None, None, :].expand(nz, *z0.shape))
        jac = cols.permute(1, 2, 3, 0)  # (M, N, R, nz)
        jt = jac.transpose(-1, -2)
        step = torch.linalg.solve(jt @ jac + DAMPING * eye, jt @ res.unsqueeze(-1)).squeeze(-1)
        trial = z0 - step
        trial_res = residuals(trial)
        better = (trial_res.square().sum(-1) < res.square().sum(-1)).unsqueeze(-1)  # NaN compares False
        z0, res = torch.where(better, trial, z0), torch.where(better, trial_res, res)
    _, z_row = _rollout_cv(twin, z0, u, d)
    ok = torch.isfinite(z_row).all(-1, keepdim=True)
    return torch.where(ok, z_row, encoded).cpu().numpy()


def estimate_state(twin: Twin, data: TwinDataset, settings: MheSettings | None = None) -> np.ndarray:
    """Estimate each member's latent at the last row of a recent-history record: (M, nz), for the optimizer."""
    return estimate_latent(twin, data, np.array([len(data) - 1]), settings=settings)[:, 0]


def forecast_from(twin: Twin, lt: LineTensors, rows: np.ndarray, z: np.ndarray, steps: int) -> np.ndarray:
    """Roll given latents from rows over the recorded inputs: (M, N, nz) -> (M, N, steps + 1, n_cv) normalised."""
    m = twin.config.members
    idx = torch.as_tensor(np.asarray(rows, dtype=int)).unsqueeze(-1) + torch.arange(steps)  # (N, steps)
    with torch.no_grad():
        cv, _ = _rollout_cv(twin, twin._t(z), lt.u[idx].expand(m, -1, -1, -1), lt.d[idx].expand(m, -1, -1, -1))
    return cv.double().cpu().numpy()
