"""A trained twin: networks plus normalisation, calibrated intervals and an out-of-distribution score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from twins.config import TwinConfig
from twins.data import Normalisation, TwinDataset
from twins.estimation import MheSettings, estimate_latent, estimate_with_offset, forecast_from
from twins.model import TwinNet
from twins.windows import LineTensors, line_tensors


@dataclass(frozen=True)
class Calibration:
    """Interval calibration: half-width = scale[k] * sqrt(spread^2 + floor^2), normalised units, k = steps ahead."""

    floor: np.ndarray  # (n_cv,) noise floor added to the ensemble spread
    scale: np.ndarray  # (K, n_cv) multiplier for k = 0..K-1 steps ahead; beyond K - 1 the last row applies
    source: str  # "val" or "train": which split the scale was fitted on
    # (K, n_cv) the nominal-coverage quantile of |k-step error| in band units on the same rows: what "recent errors as
    # usual" means for the adaptive band (twins.adaptive); None for twins calibrated before it was stored
    error_quantile: np.ndarray | None = None


@dataclass(frozen=True)
class OodStats:
    """Mahalanobis statistics of (mean latent, u, d) on training rows; score 1.0 = 99th percentile of training."""

    mean: np.ndarray  # (nz + n_mv + n_dv,)
    inv_cov: np.ndarray  # (p, p)
    q99: float  # 99th percentile of the training distance


@dataclass(frozen=True)
class InnovationLimits:
    """Thresholds of the twin's recent prediction errors (twins.innovation), fitted on normal data at a stated rate."""

    lookback: int  # L: the forecast made L samples ago is scored over the L samples since
    false_alarm_rate: float  # share of normal samples whose score exceeds the threshold (nominal), e.g. 0.01
    combined: float  # threshold of the combined score (all CVs)
    per_cv: np.ndarray  # (n_cv,) threshold of each CV's score at the same rate, to name the CVs that are off
    source: str  # "val" or "train": which split the thresholds were fitted on
    samples: int  # normal samples scored to fit them


@dataclass(frozen=True)
class TrainingInfo:
    """How a twin was trained."""

    seconds: float  # wall time of training
    device: str  # "cpu" or "cuda"
    data_sha256: str  # hash of the training rows (TwinDataset.sha256)
    train_rows: int  # rows in the training split
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch losses


@dataclass(frozen=True)
class Forecast:
    """Ensemble forecast in engineering units for N starts over steps 0..H (step 0 = the start row)."""

    members: np.ndarray  # (M, N, H + 1, n_cv)
    mean: np.ndarray  # (N, H + 1, n_cv)
    std: np.ndarray  # (N, H + 1, n_cv) epistemic spread across members
    lower: np.ndarray  # (N, H + 1, n_cv) calibrated interval bounds
    upper: np.ndarray  # (N, H + 1, n_cv)


class Twin:
    """A trained latent world model of one line with its statistics; numpy in, numpy out, engineering units."""

    # Defaults for twins pickled before the state estimator existed (bench caches): they use the encoder.
    estimator: MheSettings | None = None
    estimator_choice: dict[str, Any] | None = None

    def __init__(
        self,
        *,
        net: TwinNet,
        config: TwinConfig,
        norm: Normalisation,
        cv_names: tuple[str, ...],
        mv_names: tuple[str, ...],
        dv_names: tuple[str, ...],
        sample_period_s: float,
        calibration: Calibration,
        ood: OodStats,
        z_mean: np.ndarray,
        z_std: np.ndarray,
        input_range: dict[str, np.ndarray],
        info: TrainingInfo,
        innovation: InnovationLimits | None = None,
        estimator: MheSettings | None = None,
        estimator_choice: dict[str, Any] | None = None,
    ) -> None:
        self.net = net.eval()
        self.config = config
        self.norm = norm
        self.cv_names, self.mv_names, self.dv_names = cv_names, mv_names, dv_names
        self.sample_period_s = sample_period_s
        self.calibration = calibration
        self.ood = ood
        self.z_mean, self.z_std = z_mean, z_std  # (M, nz) each
        self.input_range = input_range  # mv_min, mv_max, dv_min, dv_max, engineering units
        self.info = info
        self.innovation = innovation  # None: trained before innovation thresholds existed (older checkpoints)
        # How the latent state is estimated: None = the encoder's latent from the last `window` rows; settings = the
        # moving-horizon fit of twins.estimation, kept at training where it forecast better on validation. Every
        # state the twin gives (encode, forecasts, intervals, scores) comes from it; estimator_choice is that
        # comparison (None for twins trained before the choice existed, which use the encoder).
        self.estimator = estimator
        self.estimator_choice = estimator_choice

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=self._dtype, device=self._device)

    def tensors(self, data: TwinDataset) -> LineTensors:
        """Normalise a record with the twin's training statistics."""
        return line_tensors(data, self.norm, self.config.window, device=str(self._device), dtype=self._dtype)

    @property
    def state_rows(self) -> int:
        """Return the rows of history a state estimate reads: fit horizon, encoder window, and the row before it."""
        # The window's first row holds the inputs of the row before it (twins.windows), as every training window did.
        return (self.estimator.horizon if self.estimator is not None else 0) + self.config.window + 1

    @torch.no_grad()
    def encode(self, data: TwinDataset, rows: np.ndarray, lt: LineTensors | None = None) -> np.ndarray:
        """Estimate each member's latent at rows from history up to and including them: (N,) -> (M, N, nz)."""
        # With an estimator: the encoder's latent `horizon` rows earlier, fitted to the CVs measured since.
        lt = lt or self.tensors(data)
        if self.estimator is not None:
            return estimate_latent(self, data, np.asarray(rows), lt, self.estimator)
        return self.net.encode_at(lt, torch.as_tensor(np.asarray(rows), device=self._device)).cpu().numpy()

    def initial_state(self, data: TwinDataset) -> np.ndarray:
        """Return each member's latent at the last row of a recent-history record: (M, nz), for the optimizer."""
        return self.encode(data, np.array([len(data) - 1]))[:, 0]

    @torch.no_grad()
    def next(self, z: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Step latents with inputs in engineering units: (M, N, nz), (N, n_mv), (N, n_dv) -> (M, N, nz)."""
        un = self._t((u - self.norm.mv_mean) / self.norm.mv_std)
        dn = self._t((d - self.norm.dv_mean) / self.norm.dv_std)
        m = self.config.members
        return self.net.next(self._t(z), un.expand(m, *un.shape), dn.expand(m, *dn.shape)).cpu().numpy()

    @torch.no_grad()
    def readout(self, z: np.ndarray) -> np.ndarray:
        """Map latents to CVs in engineering units: (M, N, nz) -> (M, N, n_cv)."""
        y = self.net.readout(self._t(z)).cpu().numpy()
        return y * self.norm.cv_std + self.norm.cv_mean

    @torch.no_grad()
    def forecast_normalised(self, lt: LineTensors, rows: np.ndarray, steps: int, offset: bool = True) -> torch.Tensor:
        """Roll every member from rows with the recorded inputs: (N,) -> (M, N, steps + 1, n_cv) normalised.

        An estimator with an offset adds the CV offset fitted at each row to its forecast (offset=False: the
        latent's alone, as the plan reads it before adding its CV bias, and as the innovations judge the twin).
        """
        if self.estimator is not None:
            z, b = estimate_with_offset(self, None, np.asarray(rows), lt, self.estimator)
            y = forecast_from(self, lt, np.asarray(rows), z, steps)
            return torch.as_tensor(y + b[:, :, None, :] if offset else y)
        return self.net.forecast(lt, torch.as_tensor(np.asarray(rows), device=self._device), steps)

    def half_width(self, spread: np.ndarray) -> np.ndarray:
        """Return calibrated interval half-widths in normalised units: (..., H + 1, n_cv) -> same."""
        k = np.minimum(np.arange(spread.shape[-2]), self.calibration.scale.shape[0] - 1)
        return self.calibration.scale[k] * np.sqrt(spread**2 + self.calibration.floor**2)

    def predict(
        self, data: TwinDataset, rows: np.ndarray, steps: int, lt: LineTensors | None = None, offset: bool = True
    ) -> Forecast:
        """Forecast CVs from rows over the recorded inputs, with calibrated intervals (offset: forecast_normalised)."""
        lt = lt or self.tensors(data)
        yn = self.forecast_normalised(lt, rows, steps, offset).double().cpu().numpy()
        mean_n, std_n = yn.mean(0), yn.std(0)
        half = self.half_width(std_n) * self.norm.cv_std
        mean = mean_n * self.norm.cv_std + self.norm.cv_mean
        members = yn * self.norm.cv_std + self.norm.cv_mean
        return Forecast(members, mean, std_n * self.norm.cv_std, mean - half, mean + half)

    def ood_score(self, z: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Score distance of (z, u, d) from training data: (M, N, nz), (N, n_mv), (N, n_dv) -> (N,); 1.0 = p99."""
        un = (u - self.norm.mv_mean) / self.norm.mv_std
        dn = (d - self.norm.dv_mean) / self.norm.dv_std
        x = np.concatenate([z.mean(0), un, dn], axis=-1) - self.ood.mean  # (N, p)
        return np.sqrt(np.einsum("np,pq,nq->n", x, self.ood.inv_cov, x)) / self.ood.q99

    def ood_score_at(self, data: TwinDataset, rows: np.ndarray) -> np.ndarray:
        """Score the state and inputs at rows of a record: (N,) -> (N,)."""
        lt = self.tensors(data)
        z = self.encode(data, rows, lt)
        r = torch.as_tensor(np.asarray(rows))
        u = lt.u[r].double().cpu().numpy() * self.norm.mv_std + self.norm.mv_mean
        d = lt.d[r].double().cpu().numpy() * self.norm.dv_std + self.norm.dv_mean
        return self.ood_score(z, u, d)
