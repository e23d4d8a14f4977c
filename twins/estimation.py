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
and h5 errors but its h20 error grows (0.037 -> 0.050), so training keeps it per twin only where it wins on that
twin's validation segment (choose_estimator; Twin.estimator). Cost: ~60-120 ms per estimate of all five members on
one busy CPU core (encoder < 1 ms); a batch of 1000 rows ~5-6 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.func import jvp, vmap

from twins.data import TwinDataset
from twins.windows import LineTensors

if TYPE_CHECKING:  # twins.twin calls this module: its Twin is only named here
    from twins.twin import Twin

DAMPING = 1e-3  # Levenberg-Marquardt damping of the Gauss-Newton normal equations, in prior units


@dataclass(frozen=True)
class MheSettings:
    """Settings of the moving-horizon latent estimate (chosen on validation, see the module docstring)."""

    horizon: int = 16  # samples of measured CVs fitted, ending at the estimate's row; 0 = the encoder's latent
    prior_scale: float = 1.0  # prior sd of the horizon-start latent about the encoder's, in training latent sds
    iterations: int = 2  # Gauss-Newton steps; each is kept only where it lowers the member's objective
    # (n_cv,) each CV's measurement weight r, normalised units; None: the twin's calibration floor. A twin that keeps
    # the estimate stores the floor it was chosen with, since its calibration is then refitted on the estimate.
    noise: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.horizon < 0 or self.iterations < 0:
            raise ValueError(f"horizon and iterations must be >= 0, got {self.horizon}, {self.iterations}")
        if not self.prior_scale > 0:
            raise ValueError(f"prior_scale must be > 0, got {self.prior_scale}")
        if self.noise is not None and not all(np.isfinite(v) and v > 0 for v in self.noise):
            raise ValueError(f"noise must be finite and > 0 for every CV, got {self.noise}")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able values."""
        return {
            "horizon": self.horizon,
            "prior_scale": self.prior_scale,
            "iterations": self.iterations,
            "noise": None if self.noise is None else [float(v) for v in self.noise],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MheSettings:
        """Rebuild settings from to_dict's values."""
        noise = values.get("noise")
        return cls(
            horizon=int(values["horizon"]),
            prior_scale=float(values["prior_scale"]),
            iterations=int(values["iterations"]),
            noise=None if noise is None else tuple(float(v) for v in noise),
        )


def _rollout_cv(twin: Twin, z0: torch.Tensor, u: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll latents and read CVs out: (M, N, nz), (M, N, L, n_mv), (M, N, L, n_dv) -> (M, N, L + 1, n_cv), (M, N, nz)."""
    z = twin.net.rollout(z0, u, d)  # (M, N, L + 1, nz)
    m, n = z.shape[:2]
    return twin.net.readout(z.flatten(1, 2)).view(m, n, z.shape[2], -1), z[:, :, -1]


@torch.no_grad()
def estimate_latent(
    twin: Twin,
    data: TwinDataset | None,
    rows: np.ndarray,
    lt: LineTensors | None = None,
    settings: MheSettings | None = None,
) -> np.ndarray:
    """Estimate each member's latent at rows from the encoder and the CVs measured before: (N,) -> (M, N, nz)."""
    # A row with fewer than `horizon` rows before it (the start of a short record) is fitted over the rows there are.
    settings = settings or MheSettings()
    if lt is None:
        assert data is not None, "estimate_latent needs the record or its tensors"
        lt = twin.tensors(data)
    rows = np.asarray(rows, dtype=int)
    horizons = np.minimum(settings.horizon, rows) if settings.iterations else np.zeros_like(rows)
    groups = np.unique(horizons)  # usually one: every row has a full horizon before it
    parts = [_fit(twin, lt, torch.as_tensor(rows[horizons == h], device=lt.y.device), int(h), settings) for h in groups]
    if len(parts) == 1:
        return parts[0]
    out = np.empty((parts[0].shape[0], rows.size, parts[0].shape[2]), dtype=parts[0].dtype)
    for h, part in zip(groups, parts, strict=True):
        out[:, horizons == h] = part
    return out


def _fit(twin: Twin, lt: LineTensors, rows_t: torch.Tensor, horizon: int, settings: MheSettings) -> np.ndarray:
    """Fit the latents at rows_t (N,) over `horizon` samples before each: (M, N, nz); the encoder's where it fails."""
    net, m = twin.net, twin.config.members
    encoded = net.encode_at(lt, rows_t)  # (M, N, nz) the fallback where the fit fails
    if horizon == 0:
        return encoded.cpu().numpy()

    # ---- data over the horizon: inputs u_k, d_k (k < L) and measured CVs y_k (k <= L), normalised
    start = rows_t - horizon
    steps = start.unsqueeze(-1) + torch.arange(horizon + 1, device=rows_t.device)  # (N, L + 1)
    u = lt.u[steps[:, :-1]].expand(m, -1, -1, -1)  # (M, N, L, n_mv)
    d = lt.d[steps[:, :-1]].expand(m, -1, -1, -1)
    y, seen = lt.y[steps], lt.y_mask[steps]  # (N, L + 1, n_cv)
    noise = twin.calibration.floor if settings.noise is None else np.asarray(settings.noise)
    r = torch.as_tensor(noise, dtype=y.dtype, device=y.device)  # (n_cv,) measurement weight: 1-step RMS error
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
        jac = cols.permute(1, 2, 3, 0).double()  # (M, N, R, nz); the normal equations in double: in single
        jt = jac.transpose(-1, -2)  # precision their rounding made an estimate depend on the batch it was in
        normal = jt @ jac + DAMPING * eye.double()
        step = torch.linalg.solve(normal, jt @ res.double().unsqueeze(-1)).squeeze(-1).to(z0.dtype)
        trial = z0 - step
        trial_res = residuals(trial)
        better = (trial_res.square().sum(-1) < res.square().sum(-1)).unsqueeze(-1)  # NaN compares False
        z0, res = torch.where(better, trial, z0), torch.where(better, trial_res, res)
    _, z_row = _rollout_cv(twin, z0, u, d)
    ok = torch.isfinite(z_row).all(-1, keepdim=True)
    return torch.where(ok, z_row, encoded).cpu().numpy()


CHOICE_STEPS = (1, 5, 20)  # steps ahead the estimate must forecast no worse than the encoder at to be kept


@torch.no_grad()
def choose_estimator(
    twin: Twin, lt: LineTensors, rows: np.ndarray, settings: MheSettings
) -> tuple[MheSettings | None, dict[str, Any]]:
    """Return settings if the estimate beats the encoder's latent on rows (validation), else None; and the comparison."""
    # Kept only where its forecasts are no worse than the encoder's at every one of CHOICE_STEPS (member-mean RMS
    # error, normalised units, over every CV measured): it trusts the twin's dynamics, and on a weak twin it can
    # sharpen the first steps but lose further out (the tests' tiny two-tank twin: h20 0.038 -> 0.056).
    steps = max(CHOICE_STEPS)
    rows = np.asarray(rows, dtype=int)
    rows = rows[rows + steps < lt.y.shape[0]]
    idx = torch.as_tensor(rows).unsqueeze(-1) + torch.arange(steps + 1)
    truth, seen = lt.y[idx].double().cpu().numpy(), lt.y_mask[idx].cpu().numpy() > 0.5  # (N, steps + 1, n_cv)

    def rms(z: np.ndarray) -> dict[str, float]:
        err = forecast_from(twin, lt, rows, z, steps).mean(0) - truth  # (N, steps + 1, n_cv)
        return {f"h{h}": float(np.sqrt(np.mean(err[:, h][seen[:, h]] ** 2))) for h in CHOICE_STEPS}

    encoder = rms(twin.net.encode_at(lt, torch.as_tensor(rows, device=lt.y.device)).cpu().numpy())
    fitted = rms(estimate_latent(twin, None, rows, lt, settings))
    keep = bool(rows.size) and all(fitted[h] <= encoder[h] for h in encoder)
    record = {
        "chosen": "moving_horizon" if keep else "encoder",
        "rows": int(rows.size),
        "rms_error": {"encoder": encoder, "moving_horizon": fitted},
        "settings": settings.to_dict(),
    }
    return (settings if keep else None), record


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
