"""Evaluation report: twin and baselines on the test segment at several horizons and in free run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from twins.adaptive import scale_series
from twins.baselines import Record
from twins.data import DataSplit, Normalisation, TwinDataset
from twins.gains import GainSign, MvExcitation, excitation, gain_signs
from twins.promotion import (
    Check,
    advice,
    check_coverage,
    check_free_run,
    check_gain_signs,
    check_versus_promoted,
    verdict,
)
from twins.twin import Twin
from twins.uncertainty import spaced

HORIZONS = (1, 5, 20)  # steps ahead scored besides the full free run
SCORING_BAND = "scoring the band"  # the phase the adaptive band's coverage is scored in, with "done/total" starts


class Baseline(Protocol):
    """Anything that forecasts normalised CVs from recorded history and inputs."""

    @property
    def name(self) -> str: ...

    def forecast(self, rec: Record, rows: np.ndarray, steps: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Incumbent:
    """The twin the optimizer uses now (the line's promoted version), to score a new version against.

    `twin` is None when it cannot be scored on this record; `problem` says why (an unreadable checkpoint, other
    columns).
    """

    label: str  # how the report and the page name it, e.g. "promoted v4"
    twin: Twin | None
    problem: str = ""

    def comparable(self, data: TwinDataset) -> str:
        """Return why the twin cannot forecast this record ('' when it can; the columns' order may differ)."""
        if self.twin is None:
            return self.problem or "it could not be loaded"
        for kind in ("cv", "mv", "dv"):
            mine, theirs = tuple(getattr(data, f"{kind}_names")), tuple(getattr(self.twin, f"{kind}_names"))
            if sorted(mine) != sorted(theirs):
                return f"it reads {kind.upper()}s {', '.join(theirs) or 'none'}, this record has {', '.join(mine) or 'none'}"
        return ""


def _columns(names: tuple[str, ...], order: tuple[str, ...]) -> list[int]:
    return [names.index(n) for n in order]


@dataclass(frozen=True)
class TwinBaseline:
    """Another twin scored like a baseline: its ensemble mean, in the evaluated twin's normalised units and CV order."""

    name: str
    twin: Twin
    data: TwinDataset  # the evaluated record, its columns in any order of the same names
    norm: Normalisation  # the evaluated twin's statistics, which the Record and every score use

    def forecast(self, rec: Record, rows: np.ndarray, steps: int) -> np.ndarray:
        """Forecast normalised CVs from rows with the recorded inputs: (N,) -> (N, steps + 1, n_cv)."""
        twin, data = self.twin, self.data
        cols = {k: _columns(getattr(data, f"{k}_names"), getattr(twin, f"{k}_names")) for k in ("cv", "mv", "dv")}
        # the record in the twin's column order, as production reads it (by tag name)
        arrays: dict[str, Any] = {
            f"{k}{part}": getattr(data, f"{k}{part}")[:, c] for k, c in cols.items() for part in ("", "_mask")
        }
        names: dict[str, Any] = {f"{k}_names": tuple(getattr(twin, f"{k}_names")) for k in cols}
        theirs = dataclasses.replace(data, **arrays, **names)
        yn = twin.forecast_normalised(twin.tensors(theirs), rows, steps).double().cpu().numpy().mean(0)
        y = (yn * twin.norm.cv_std + twin.norm.cv_mean)[..., _columns(twin.cv_names, data.cv_names)]
        return (y - self.norm.cv_mean) / self.norm.cv_std


@dataclass(frozen=True)
class Scores:
    """Normalised RMSE (RMSE / training std) per horizon key ("h1", "h5", "h20", "free_run") and CV."""

    nrmse: dict[str, dict[str, float]]
    mean: dict[str, float]  # per horizon key, averaged over CVs


@dataclass(frozen=True)
class EvaluationReport:
    """What a user needs to judge a twin: errors beside baselines, interval coverage, cost, promotion verdict."""

    cv_names: list[str]
    twin: Scores
    baselines: dict[str, Scores]
    coverage: dict[str, dict[str, float]]  # horizon key -> CV -> share of test samples inside the calibrated interval
    # the same inside the adaptive band (twins.adaptive, as production draws it: widened by the errors before each
    # start), which the promotion gate judges; None for a twin calibrated before the adaptive band existed
    adaptive_coverage: dict[str, dict[str, float]] | None
    nominal_coverage: float
    interval_source: str  # split the interval scale was calibrated on
    test_rows: int
    test_starts: int  # rollout start points scored for the horizon errors
    train_seconds: float
    device: str
    data_sha256: str
    promotable: bool  # every promotion check passed (twins.promotion)
    reason: str  # which checks passed and which failed, in one sentence
    checks: list[Check]  # free run vs linear ARX, gain signs vs the data's steps, interval coverage
    gain_signs: list[GainSign]  # per (MV, CV): the sign the data's isolated steps show and the twin's
    excitation: list[MvExcitation]  # per MV: moves and isolated steps in the record
    advice: list[str]  # for each failed check: what data would help and who can act
    # how the twin estimates its latent state, chosen on validation (Twin.estimator_choice); None for older twins
    state_estimate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-able dict."""
        return asdict(self)


def _nrmse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return per-CV RMSE over masked samples: (..., n_cv) -> (n_cv,)."""
    sq = np.where(mask, (pred - truth) ** 2, 0.0).reshape(-1, pred.shape[-1])
    count = mask.reshape(-1, pred.shape[-1]).sum(0)
    return np.sqrt(sq.sum(0) / np.maximum(count, 1))


def _scores(
    names: list[str], horizon_pred: np.ndarray, free: np.ndarray, truth: np.ndarray, mask: np.ndarray, fr: tuple
) -> Scores:
    """Score (N, K, n_cv) horizon forecasts and a (L, n_cv) free run against the record."""
    out: dict[str, dict[str, float]] = {}
    for h in HORIZONS:
        err = _nrmse(horizon_pred[:, h], truth[:, h], mask[:, h])
        out[f"h{h}"] = dict(zip(names, map(float, err), strict=True))
    err = _nrmse(free, fr[0], fr[1])
    out["free_run"] = dict(zip(names, map(float, err), strict=True))
    return Scores(out, {k: float(np.mean(list(v.values()))) for k, v in out.items()})


def _coverage(names: list[str], inside: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Return the share of measured samples inside the band per horizon key and CV, from (N, K, n_cv) arrays."""
    out = {}
    for key, ks in [*((f"h{h}", [h]) for h in HORIZONS), ("h1_to_h20", list(range(1, max(HORIZONS) + 1)))]:
        m = mask[:, ks]
        share = np.where(m, inside[:, ks], False).sum((0, 1)) / np.maximum(m.sum((0, 1)), 1)
        out[key] = dict(zip(names, map(float, share), strict=True))
    return out


def evaluate(
    twin: Twin,
    split: DataSplit,
    baselines: list[Baseline],
    rec: Record,
    incumbent: Incumbent | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Score the twin and baselines on the test segment; history before it is used only as encoder input.

    With an incumbent (the promoted twin), it is scored beside them on the same segment, under its label, and the
    verdict warns when the new twin's free run is worse than its own (twins.promotion.check_versus_promoted).
    on_phase is told the adaptive band's progress ("scoring the band 512/5440"), the longest part by far.
    """
    data, steps = split.dataset, max(HORIZONS)
    problem = incumbent.comparable(data) if incumbent is not None else ""
    if incumbent is not None and incumbent.twin is not None and not problem:
        baselines = [*baselines, TwinBaseline(incumbent.label, incumbent.twin, data, twin.norm)]
    names = list(data.cv_names)
    good = data.row_good()
    test = np.arange(split.val_stop, len(data) - steps)
    rows = spaced(test[good[test]], twin.config.eval_starts)
    if rows.size == 0:
        raise ValueError(f"the test segment ({len(data) - split.val_stop} rows) is too short to score {steps} steps")
    idx = rows[:, None] + np.arange(steps + 1)  # (N, K)
    truth, mask = rec.y[idx], rec.y_mask[idx]
    s0 = split.val_stop + int(np.argmax(good[split.val_stop :]))
    run = len(data) - 1 - s0  # free-run length in steps
    fr = (rec.y[s0 + 1 :], rec.y_mask[s0 + 1 :])  # free run scored from the first step after its start

    lt = twin.tensors(data)
    fc = twin.predict(data, rows, steps, lt)
    mean_n = (fc.mean - twin.norm.cv_mean) / twin.norm.cv_std  # normalised with the twin's (= training) stats
    free_n = twin.forecast_normalised(lt, np.array([s0]), run).double().cpu().numpy().mean(0)[0, 1:]
    twin_scores = _scores(names, mean_n, free_n, truth, mask, fr)
    base_scores = {
        b.name: _scores(
            names, b.forecast(rec, rows, steps), b.forecast(rec, np.array([s0]), run)[0, 1:], truth, mask, fr
        )
        for b in baselines
    }

    y, half = data.cv[idx], (fc.upper - fc.lower) / 2
    widened = twin.calibration.error_quantile is not None
    coverage = _coverage(names, (y >= fc.lower) & (y <= fc.upper), mask)
    adaptive = None
    if widened:
        progress = (lambda done, total: on_phase(f"{SCORING_BAND} {done}/{total}")) if on_phase else None
        scale = scale_series(twin, data, rows, lt, steps=steps, on_progress=progress)  # (N, K, n_cv): band_scale's
        adaptive = _coverage(names, np.abs(y - fc.mean) <= half * scale, mask)

    linear = base_scores.get("linear_arx")
    gains, moves = gain_signs(twin, data), excitation(data, twin.config.horizon)
    checks = [
        check_free_run(twin_scores.mean["free_run"], linear.mean["free_run"] if linear else None),
        check_gain_signs(gains),
        check_coverage(adaptive or coverage, twin.config.interval, widened=widened),
    ]
    if incumbent is not None:
        theirs = base_scores.get(incumbent.label)
        checks.append(
            check_versus_promoted(
                twin_scores.mean["free_run"], theirs.mean["free_run"] if theirs else None, incumbent.label, problem
            )
        )
    promotable, reason = verdict(checks)
    return EvaluationReport(
        cv_names=names,
        twin=twin_scores,
        baselines=base_scores,
        coverage=coverage,
        adaptive_coverage=adaptive,
        nominal_coverage=twin.config.interval,
        interval_source=twin.calibration.source,
        test_rows=len(data) - split.val_stop,
        test_starts=int(rows.size),
        train_seconds=twin.info.seconds,
        device=twin.info.device,
        data_sha256=twin.info.data_sha256,
        promotable=promotable,
        reason=reason,
        checks=checks,
        gain_signs=gains,
        excitation=moves,
        advice=advice(checks, gains, moves, twin.config.horizon),
        state_estimate=twin.estimator_choice,
    )
