"""What a proposal's prediction was worth: its CVs measured over the horizon against the predicted ones.

Plain computation on the stored proposal and the measured window (no database): the outcome service composes it.

Time base: the prediction starts at `start`; MV setpoint u[k] applies during [start + k·period, start + (k+1)·period)
and CV prediction k refers to start + (k+1)·period (as the twin was trained). The measured window therefore holds
horizon + 1 buckets of one period from `start`: MVs and DVs from buckets 0..N-1, CVs from buckets 1..N.

What is compared with what:
- a released (approved) proposal: the measured CVs against the CVs predicted under the approved plan, with its band;
  realized gain = realized value - value the twin predicted for holding the setpoints.
- a shadow proposal (never applied): the plan's prediction says nothing about a plant that did not follow it, so the
  measured CVs are compared with the twin's prediction for holding the setpoints (cv_hold_mean), inside a band of the
  plan's width around it; there is no realized gain, and the MVs' largest deviation from the held setpoints says
  whether the plant in fact held them (operators may have moved them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from optimizer import MpcSpec, objective_value

MARGIN_PERIODS = 2.0  # sample periods after the horizon's last step before an outcome is recorded (late samples)
PLAN, HOLD = "plan", "hold"


@dataclass(frozen=True)
class Prediction:
    """The trajectory an outcome is measured against, from a stored proposal."""

    compared_with: str  # PLAN: the released plan; HOLD: holding the setpoints (shadow proposals)
    start: datetime  # when step 0 began
    period_s: float
    horizon: int
    cv_mean: dict[str, list[float]]  # (N,) per CV: the compared prediction
    cv_lo: dict[str, list[float]]  # (N,) per CV: its band
    cv_hi: dict[str, list[float]]
    mv_expected: dict[str, list[float]]  # (N,) per MV: the setpoints the prediction assumed
    value_per_h: float | None  # economic value of the compared prediction, currency per hour
    hold_value_per_h: float | None  # economic value of holding the setpoints, as predicted
    note: str = ""
    mv_before: dict[str, float] = field(default_factory=dict)  # per MV: the setpoint in force before step 0

    @property
    def end(self) -> datetime:
        """Return when the horizon's last predicted CV sample is due."""
        return self.start + timedelta(seconds=self.period_s * self.horizon)


@dataclass(frozen=True)
class Measured:
    """A line's tags in buckets of one period from a prediction's start: (horizon + 1,) values, None where no data."""

    values: dict[str, list[float | None]]


@dataclass
class OutcomeDraft:
    """An outcome before it is stored (fields as in models.Outcome)."""

    compared_with: str
    start: datetime
    period_s: float
    horizon: int
    predicted: dict[str, list[float]]
    band_lo: dict[str, list[float]]
    band_hi: dict[str, list[float]]
    measured: dict[str, list[float | None]]
    error: dict[str, list[float | None]]  # measured - predicted, by step ahead
    coverage: float | None  # share of measured CV samples inside the band; None when none was measured
    coverage_by_cv: dict[str, float | None]
    measured_share: float  # share of the horizon's CV samples that were measured
    predicted_value_per_h: float | None
    realized_value_per_h: float | None
    predicted_gain_per_h: float | None
    realized_gain_per_h: float | None
    mv_deviation: dict[str, float | None]  # largest |measured MV - expected setpoint| over the horizon
    note: str = ""


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def prediction_of(
    *,
    result: dict[str, Any],
    approved_plan: dict[str, Any] | None,
    inputs: dict[str, Any],
    spec: dict[str, Any],
    start: datetime,
    released: bool,
    band: str,
) -> Prediction:
    """Return what a proposal predicted, as the outcome compares it: the released plan, or holding for shadow ones."""
    period, horizon = float(result["sample_period_s"]), int(result["horizon"])
    current_mv = {k: float(v) for k, v in (inputs.get("current_mv") or {}).items()}
    current_dv = {k: float(v) for k, v in (inputs.get("current_dv") or {}).items()}
    hold_mv = {name: [current_mv.get(name, plan[0])] * horizon for name, plan in result["mv_plan"].items()}
    mpc_spec = MpcSpec.from_line_spec(spec)
    hold = {k: _floats(v) for k, v in (result.get("cv_hold_mean") or {}).items()}
    hold_value = _value(mpc_spec, hold, hold_mv, current_dv, horizon) if hold else None
    if released:
        plan = approved_plan or result
        mean = {k: _floats(v) for k, v in plan["cv_mean"].items()}
        mv = {k: _floats(v) for k, v in plan["mv_plan"].items()}
        scale = float((approved_plan or {}).get("scale", 1.0))
        note = f"the plan as approved, with the moves scaled to {scale:.0%} of the proposal's" if scale != 1.0 else ""
        return Prediction(
            PLAN,
            start,
            period,
            horizon,
            mean,
            {k: _floats(v) for k, v in plan["cv_lo"].items()},
            {k: _floats(v) for k, v in plan["cv_hi"].items()},
            mv,
            _value(mpc_spec, mean, mv, current_dv, horizon),
            hold_value,
            note,
            current_mv,
        )
    # Shadow: not applied. The band keeps the plan's half-width (ensemble spread), centred on the hold prediction.
    half = {
        k: [(hi - lo) / 2 for lo, hi in zip(result["cv_lo"][k], result["cv_hi"][k], strict=True)]
        for k in result["cv_lo"]
    }
    return Prediction(
        HOLD,
        start,
        period,
        horizon,
        hold,
        {k: [m - h for m, h in zip(v, half[k], strict=True)] for k, v in hold.items()},
        {k: [m + h for m, h in zip(v, half[k], strict=True)] for k, v in hold.items()},
        hold_mv,
        hold_value,
        hold_value,
        f"shadow proposal, not applied: compared with the twin's prediction for holding the setpoints "
        f"(band: the plan's width, {band})",
        current_mv,
    )


def _value(
    spec: MpcSpec, cv: dict[str, list[float]], mv: dict[str, list[float]], dv: dict[str, float], horizon: int
) -> float | None:
    """Return the mean economic value per hour of predicted CVs, planned MVs and DVs held at their current values."""
    rows: dict[str, np.ndarray] = {k: np.asarray(v, dtype=float) for k, v in (cv | mv).items()}
    rows |= {k: np.full(horizon, v) for k, v in dv.items()}
    return _mean_value(spec, rows, horizon)


def _mean_value(spec: MpcSpec, rows: dict[str, np.ndarray], horizon: int) -> float | None:
    """Return the spec's objective averaged over the steps where every tag it names has a value."""
    if not spec.objective_terms:
        return None
    needed = {t for term in spec.objective_terms for t in term.tags}
    if not needed <= set(rows):
        return None
    price = np.array([t.price for t in spec.objective_terms], dtype=float)
    per_step = np.asarray(objective_value(spec, rows, price, zero=np.zeros(horizon)), dtype=float)  # (N,)
    finite = per_step[np.isfinite(per_step)]
    return float(finite.mean()) if finite.size else None


def _column(values: list[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


def outcome_compare(*, prediction: Prediction, measured: Measured, spec: dict[str, Any]) -> OutcomeDraft:
    """Return the outcome: error by step ahead, band coverage, realized against predicted value and gain."""
    p, n = prediction, prediction.horizon
    cvs = sorted(p.cv_mean)
    got: dict[str, list[float | None]] = {}
    error: dict[str, list[float | None]] = {}
    coverage_by_cv: dict[str, float | None] = {}
    inside_all = counted_all = 0
    rows: dict[str, np.ndarray] = {}
    for name in cvs:
        y = _column(measured.values.get(name, [None] * (n + 1))[1 : n + 1])  # CV k at start + (k+1)·period
        mean, lo, hi = (np.asarray(a[name], dtype=float) for a in (p.cv_mean, p.cv_lo, p.cv_hi))
        seen = np.isfinite(y)
        got[name] = [float(v) if ok else None for v, ok in zip(y, seen, strict=True)]
        error[name] = [float(e) if ok else None for e, ok in zip(y - mean, seen, strict=True)]
        inside = int(np.sum((y[seen] >= lo[seen]) & (y[seen] <= hi[seen])))
        coverage_by_cv[name] = inside / int(seen.sum()) if seen.any() else None
        inside_all, counted_all = inside_all + inside, counted_all + int(seen.sum())
        rows[name] = y
    deviation: dict[str, float | None] = {}
    for name, expected in p.mv_expected.items():
        u = _column(measured.values.get(name, [None] * (n + 1))[:n])  # MV k during step k
        rows[name] = u
        now = np.asarray(expected, dtype=float)
        # A step's setpoint is written at the step's start, so its bucket may also hold samples of the one before
        # (its mean lies between the two): only a value outside both is a deviation from the plan.
        before = np.concatenate([[p.mv_before.get(name, now[0])], now[:-1]]) if n else now
        gap = np.maximum(np.minimum(before, now) - u, u - np.maximum(before, now)).clip(min=0.0)
        deviation[name] = float(np.nanmax(gap)) if np.isfinite(gap).any() else None
    for name, values in measured.values.items():
        rows.setdefault(name, _column(values[:n]))  # DVs, as measured during each step
    mpc_spec = MpcSpec.from_line_spec(spec)
    realized = _mean_value(mpc_spec, rows, n)
    predicted_gain = (
        p.value_per_h - p.hold_value_per_h
        if p.compared_with == PLAN and p.value_per_h is not None and p.hold_value_per_h is not None
        else None
    )
    realized_gain = (
        realized - p.hold_value_per_h
        if p.compared_with == PLAN and realized is not None and p.hold_value_per_h is not None
        else None
    )
    note = p.note
    if counted_all == 0:
        note = "; ".join(filter(None, [note, "no CV was measured over the horizon"]))
    return OutcomeDraft(
        compared_with=p.compared_with,
        start=p.start,
        period_s=p.period_s,
        horizon=n,
        predicted=p.cv_mean,
        band_lo=p.cv_lo,
        band_hi=p.cv_hi,
        measured=got,
        error=error,
        coverage=inside_all / counted_all if counted_all else None,
        coverage_by_cv=coverage_by_cv,
        measured_share=counted_all / (n * len(cvs)) if cvs and n else 0.0,
        predicted_value_per_h=p.value_per_h,
        realized_value_per_h=realized,
        predicted_gain_per_h=predicted_gain,
        realized_gain_per_h=realized_gain,
        mv_deviation=deviation,
        note=note,
    )
