"""Data contract of a twin: aligned arrays with masks, time split, normalisation, refusals."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from twins.config import TwinConfig


class InsufficientDataError(ValueError):
    """Raised when a training split cannot yield a useful twin; the message says what is missing."""


def _as_2d(values: np.ndarray | None, rows: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros((rows, 0), dtype=np.float64)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, n), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class TwinDataset:
    """One contiguous record of a line at its sample period; masks are True where a sample is good."""

    cv: np.ndarray  # (T, n_cv) engineering units
    mv: np.ndarray  # (T, n_mv)
    dv: np.ndarray  # (T, n_dv), n_dv may be 0
    cv_mask: np.ndarray  # (T, n_cv) bool
    mv_mask: np.ndarray  # (T, n_mv) bool
    dv_mask: np.ndarray  # (T, n_dv) bool
    cv_names: tuple[str, ...]
    mv_names: tuple[str, ...]
    dv_names: tuple[str, ...]
    sample_period_s: float

    def __post_init__(self) -> None:
        rows = self.cv.shape[0]
        for part in ("cv", "mv", "dv"):
            values, mask = getattr(self, part), getattr(self, f"{part}_mask")
            names = getattr(self, f"{part}_names")
            if values.ndim != 2 or values.shape[0] != rows or mask.shape != values.shape or mask.dtype != bool:
                raise ValueError(f"{part} and {part}_mask must be (T, n) with T = {rows} and a bool mask")
            if len(names) != values.shape[1]:
                raise ValueError(f"{len(names)} {part} names for {values.shape[1]} {part} columns")
            if not np.all(np.isfinite(values[mask])):
                raise ValueError(f"{part} has non-finite values marked good; build with TwinDataset.from_arrays")
        if self.cv.shape[1] < 1 or self.mv.shape[1] < 1:
            raise ValueError("a twin needs at least one CV and one MV")
        if not self.sample_period_s > 0:
            raise ValueError(f"sample_period_s must be > 0, got {self.sample_period_s}")

    @classmethod
    def from_arrays(
        cls,
        *,
        cv: np.ndarray,
        mv: np.ndarray,
        cv_names: list[str] | tuple[str, ...],
        mv_names: list[str] | tuple[str, ...],
        sample_period_s: float,
        dv: np.ndarray | None = None,
        dv_names: list[str] | tuple[str, ...] = (),
        cv_mask: np.ndarray | None = None,
        mv_mask: np.ndarray | None = None,
        dv_mask: np.ndarray | None = None,
    ) -> TwinDataset:
        """Build a dataset, marking non-finite samples bad and filling bad values with 0."""
        cv2 = _as_2d(cv, len(cv), "cv")
        rows = cv2.shape[0]
        parts = {"cv": (cv2, cv_mask), "mv": (_as_2d(mv, rows, "mv"), mv_mask), "dv": (_as_2d(dv, rows, "dv"), dv_mask)}
        built: dict[str, np.ndarray] = {}
        for part, (values, mask) in parts.items():
            good = np.isfinite(values)
            if mask is not None:
                good &= _as_2d(mask, rows, f"{part}_mask").astype(bool)
            built[part] = np.where(good, values, 0.0)
            built[f"{part}_mask"] = good
        return cls(
            **built,
            cv_names=tuple(cv_names),
            mv_names=tuple(mv_names),
            dv_names=tuple(dv_names),
            sample_period_s=float(sample_period_s),
        )

    def __len__(self) -> int:
        return int(self.cv.shape[0])

    def row_good(self) -> np.ndarray:
        """Return (T,) True where every CV, MV and DV sample of the row is good."""
        return np.asarray(self.cv_mask.all(1) & self.mv_mask.all(1) & self.dv_mask.all(1), dtype=bool)

    def sha256(self, start: int = 0, stop: int | None = None) -> str:
        """Return the SHA-256 of rows [start, stop): good values, masks, names and period."""
        digest = hashlib.sha256()
        digest.update(repr((self.cv_names, self.mv_names, self.dv_names, self.sample_period_s)).encode())
        for part in ("cv", "mv", "dv"):
            values = getattr(self, part)[start:stop]
            mask = getattr(self, f"{part}_mask")[start:stop]
            digest.update(np.ascontiguousarray(np.where(mask, values, 0.0), dtype="<f8").tobytes())
            digest.update(np.ascontiguousarray(mask).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class DataSplit:
    """A time split of one record: train = [0, train_stop), val = [train_stop, val_stop), test = [val_stop, T)."""

    dataset: TwinDataset
    train_stop: int
    val_stop: int

    def __post_init__(self) -> None:
        if not 0 < self.train_stop <= self.val_stop <= len(self.dataset):
            raise ValueError(f"need 0 < train_stop <= val_stop <= {len(self.dataset)}")


def split_rows(rows: int, *, val_fraction: float = 0.15, test_fraction: float = 0.15) -> tuple[int, int]:
    """Return (train_stop, val_stop) of a record of `rows` rows split by time (split_by_time's blocks)."""
    test_rows = int(round(rows * test_fraction))
    val_rows = int(round(rows * val_fraction))
    return rows - test_rows - val_rows, rows - test_rows


def split_by_time(dataset: TwinDataset, *, val_fraction: float = 0.15, test_fraction: float = 0.15) -> DataSplit:
    """Split a record into contiguous train, validation and test blocks, in time order."""
    train_stop, val_stop = split_rows(len(dataset), val_fraction=val_fraction, test_fraction=test_fraction)
    return DataSplit(dataset, train_stop=train_stop, val_stop=val_stop)


@dataclass(frozen=True)
class Normalisation:
    """Per-tag mean and std computed on good training samples only."""

    cv_mean: np.ndarray  # (n_cv,)
    cv_std: np.ndarray  # (n_cv,)
    mv_mean: np.ndarray  # (n_mv,)
    mv_std: np.ndarray  # (n_mv,)
    dv_mean: np.ndarray  # (n_dv,)
    dv_std: np.ndarray  # (n_dv,)

    @classmethod
    def fit(cls, dataset: TwinDataset, stop: int) -> Normalisation:
        """Compute statistics on rows [0, stop) of a dataset, good samples only."""
        stats: dict[str, np.ndarray] = {}
        for part in ("cv", "mv", "dv"):
            values = getattr(dataset, part)[:stop]
            mask = getattr(dataset, f"{part}_mask")[:stop]
            count = np.maximum(mask.sum(0), 1)
            mean = (values * mask).sum(0) / count
            std = np.sqrt((((values - mean) * mask) ** 2).sum(0) / count)
            stats[f"{part}_mean"] = mean
            # A constant tag (a DV that never moves) would divide by zero; unit scale keeps it harmless.
            stats[f"{part}_std"] = np.where(std > 1e-9 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(**stats)


def check_trainable(split: DataSplit, config: TwinConfig) -> np.ndarray:
    """Refuse a split that cannot train a twin; return the (N,) usable training window starts."""
    data, stop = split.dataset, split.train_stop
    good = data.row_good()[:stop]
    need = max(config.min_train_samples, 2 * (config.window + config.horizon))
    if good.sum() < need:
        raise InsufficientDataError(
            f"too little data: need at least {need} good samples (rows where every CV, MV and DV is good) "
            f"in the training split, got {int(good.sum())} of {stop} rows"
        )
    mv, mv_mask = data.mv[:stop], data.mv_mask[:stop]
    still = []
    for j, name in enumerate(data.mv_names):
        seen = mv[mv_mask[:, j], j]
        if seen.size < 2 or np.ptp(seen) <= 1e-9 * max(1.0, float(np.abs(seen).max())):
            still.append(f"{name} (constant at {seen[0]:.6g})" if seen.size else f"{name} (no good samples)")
    if still:
        raise InsufficientDataError(
            "no MV excitation in the training split: these MVs never move, so their effect cannot be learned: "
            + ", ".join(still)
        )
    starts = usable_starts(good, config.window, config.horizon, config.min_good_fraction)
    need_windows = max(config.batch_size, need // 4)
    if starts.size < need_windows:
        worst = _worst_tags(data, stop)
        raise InsufficientDataError(
            f"too many bad samples: only {starts.size} training windows of {config.window + config.horizon} rows "
            f"are at least {config.min_good_fraction:.0%} good, need {need_windows}; most-bad tags: {worst}"
        )
    return starts


def usable_starts(good: np.ndarray, window: int, horizon: int, min_fraction: float) -> np.ndarray:
    """Return starts t whose rows [t - window + 1, t + horizon] stay in range and are mostly good."""
    rows = good.size
    cum = np.concatenate([[0], np.cumsum(good)])
    t = np.arange(0, rows - horizon)
    lo = np.maximum(t - window + 1, 0)
    hi = t + horizon + 1
    frac = (cum[hi] - cum[lo]) / (hi - lo)
    # The start row itself must be good: the encoder anchors the rollout on it.
    return t[(frac >= min_fraction) & good[t]]


def _worst_tags(data: TwinDataset, stop: int) -> str:
    names = data.cv_names + data.mv_names + data.dv_names
    masks = np.concatenate([data.cv_mask[:stop], data.mv_mask[:stop], data.dv_mask[:stop]], axis=1)
    bad = 1.0 - masks.mean(0)
    order = np.argsort(-bad)[:3]
    return ", ".join(f"{names[i]} {bad[i]:.0%} bad" for i in order)
