"""One solve's limits and weights, named by MV and CV in the twin's order, assembled from the line spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from optimizer.model import Dynamics
from optimizer.spec import MpcSettings, MpcSpec, MvSpec


@dataclass(frozen=True)
class MvBounds:
    """MV limits of one solve: per-step setpoint bounds and the per-step move limit."""

    low: np.ndarray  # (n_mv, N) engineering units (MV limits within the trusted training range)
    high: np.ndarray  # (n_mv, N)
    max_move: np.ndarray  # (n_mv,) inf where none: the line's move limit, a hard limit
    step_move: np.ndarray  # (n_mv, N) the plan's move limit per step: max_move, 0 over the held tail (terminal)


@dataclass(frozen=True)
class CvLimits:
    """CV limits of one solve in engineering units, +/- inf where none."""

    low: np.ndarray  # (n_cv,) operating (soft)
    high: np.ndarray
    safety_low: np.ndarray  # (n_cv,) safety (hard)
    safety_high: np.ndarray

    def backed_off(self, backoff: np.ndarray) -> CvLimits:
        """Return these limits with the operating (soft) ones tightened by backoff (n_cv,), never past each other."""
        width = np.where(np.isfinite(self.low) & np.isfinite(self.high), self.high - self.low, np.inf)
        b = np.minimum(np.maximum(backoff, 0.0), 0.5 * width)
        return CvLimits(self.low + b, self.high - b, self.safety_low, self.safety_high)


@dataclass(frozen=True)
class SolveLimits:
    """Every limit of one solve, and which MV bounds come from the twin's trusted range rather than the line."""

    mv: MvBounds
    cv: CvLimits
    trust_low: np.ndarray  # (n_mv,) bool: the low MV bound is the trusted range's, not the line's limit
    trust_high: np.ndarray  # (n_mv,) bool


@dataclass(frozen=True)
class Weights:
    """Prices, targets and soft-limit weights of one solve (they may change between solves)."""

    price: np.ndarray  # (n_terms,) currency per hour per unit of each term's product
    target: np.ndarray  # (n_targets,)
    target_weight: np.ndarray  # (n_targets,)
    soft_weight: np.ndarray  # (n_cv,) per CV, from its rank


def solve_limits(dyn: Dynamics, spec: MpcSpec, settings: MpcSettings, u_now: np.ndarray) -> SolveLimits | str:
    """Return the limits of a solve from setpoints u_now (n_mv,), or why the MV limits cannot be met by the twin."""
    n, mvs = settings.horizon, {m.name: m for m in spec.mvs}
    width = dyn.train_mv_max - dyn.train_mv_min
    trust_lo = dyn.train_mv_min - settings.trust_region_margin * width
    trust_hi = dyn.train_mv_max + settings.trust_region_margin * width
    line_lo, line_hi = _line_mv_limits(mvs, dyn.mv)
    lo, hi, max_move = np.maximum(line_lo, trust_lo), np.minimum(line_hi, trust_hi), np.empty(len(dyn.mv))
    for i, name in enumerate(dyn.mv):
        m = mvs[name]
        if lo[i] > hi[i]:
            return (
                f"MV {name}: limits [{m.limits.low}, {m.limits.high}] do not overlap the twin's trusted range "
                f"[{trust_lo[i]:g}, {trust_hi[i]:g}]"
            )
        ramp = _num(m.ramp_rate_per_min, np.inf) * dyn.sample_period_s / 60.0
        max_move[i] = min(_num(m.max_move_per_step, np.inf), ramp)
    # Terminal constraint: the plan holds its setpoints over its last steps, so it ends at a steady setpoint
    # (where its effect is seen within the horizon) rather than unwinding moves whose cost comes after it.
    hold = min(terminal_hold_steps(settings), n - 1)
    step_move = np.repeat(max_move[:, None], n, axis=1)
    step_move[:, n - hold :] = 0.0
    # A setpoint already outside its range may come back no faster than its move limits allow.
    reach = np.cumsum(step_move, axis=1)  # (n_mv, N)
    mv = MvBounds(
        np.minimum(lo[:, None], u_now[:, None] + reach),
        np.maximum(hi[:, None], u_now[:, None] - reach),
        max_move,
        step_move,
    )
    cvs = {c.name: c for c in spec.cvs}
    cv = CvLimits(
        low=np.array([_num(cvs[c].limits.low, -np.inf) for c in dyn.cv]),
        high=np.array([_num(cvs[c].limits.high, np.inf) for c in dyn.cv]),
        safety_low=np.array([_num(cvs[c].safety.low, -np.inf) for c in dyn.cv]),
        safety_high=np.array([_num(cvs[c].safety.high, np.inf) for c in dyn.cv]),
    )
    return SolveLimits(mv, cv, trust_low=lo > line_lo, trust_high=hi < line_hi)


def terminal_hold_steps(settings: MpcSettings) -> int:
    """Return how many final steps of a plan hold their setpoints (settings, or a sixth of the horizon)."""
    if settings.terminal_hold_steps is None:
        return settings.horizon // 6
    return settings.terminal_hold_steps


def terminal_tail_steps(settings: MpcSettings) -> int:
    """Return how many steps past a plan its terminal cost predicts (settings, or as many as the horizon)."""
    if settings.terminal_tail_steps is None:
        return settings.horizon
    return settings.terminal_tail_steps


def solve_weights(dyn: Dynamics, spec: MpcSpec, settings: MpcSettings) -> Weights:
    """Return the prices, targets and soft-limit weights of a solve (soft weights by each CV's rank)."""
    ranks = {c.name: c.rank for c in spec.cvs}
    return Weights(
        price=np.array([t.price for t in spec.objective_terms], dtype=float),
        target=np.array([t.value for t in spec.targets], dtype=float),
        target_weight=np.array([t.weight for t in spec.targets], dtype=float),
        soft_weight=np.array([settings.soft_penalty_by_rank[ranks[c] - 1] for c in dyn.cv], dtype=float),
    )


def soft_slack(y: np.ndarray, cv: CvLimits, cv_std: np.ndarray) -> np.ndarray:
    """Return the soft-limit slack (n_cv, N), in CV stds, that CVs y (n_cv, N) need to meet the operating limits."""
    over = np.maximum(cv.low[:, None] - y, y - cv.high[:, None])
    return np.maximum(over / cv_std[:, None], 0.0)


def _line_mv_limits(mvs: Mapping[str, MvSpec], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return the line's own MV limits (n_mv,) low and high, +/- inf where none."""
    return (
        np.array([_num(mvs[n].limits.low, -np.inf) for n in names]),
        np.array([_num(mvs[n].limits.high, np.inf) for n in names]),
    )


def _num(value: float | None, default: float) -> float:
    return default if value is None else float(value)
