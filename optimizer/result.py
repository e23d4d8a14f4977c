"""What one solve returns: a complete proposal with its predictions, or a status that says why there is none."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class MpcStatus(enum.StrEnum):
    """Outcome of a solve; only OPTIMAL carries a proposal."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"  # hard limits (safety, MV) cannot all be met, e.g. a CV already beyond safety
    SOLVER_FAILED = "solver_failed"  # IPOPT stopped without a trustworthy solution
    TIMEOUT = "timeout"  # the time budget ran out before a safe plan was found
    NOT_CONVERGED = "not_converged"  # the linearisation budget ran out (within the time budget), no safe plan in hand
    BAD_INPUT = "bad_input"  # NaN, missing or mis-shaped state, MVs or DV forecast; the solver was not called
    INCOMPATIBLE = "incompatible"  # the twin does not fit the line spec (tags, shapes, ranges, format)


Trajectories = Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class MpcResult:
    """One solve: the proposed moves, predicted CVs with uncertainty bands and expected gain, or why there are none.

    Trajectories have one value per predictor step k = 0..N-1: setpoint u[k] applies during step k, and the CV
    values are those at the end of step k. Objective figures are economic value in currency per hour, averaged
    over the horizon; `objective_gain` is the plan's value minus that of holding the current setpoints, both
    simulated through the same twin.
    """

    status: MpcStatus
    message: str
    horizon: int  # predictor steps N
    sample_period_s: float  # seconds per step
    first_setpoint: Mapping[str, float] | None = None  # MV setpoints to apply now
    first_move: Mapping[str, float] | None = None  # first_setpoint - current setpoint
    mv_plan: Trajectories | None = None  # planned setpoints per MV, (N,)
    cv_mean: Trajectories | None = None  # predicted ensemble-mean CVs under the plan, (N,)
    cv_lo: Trajectories | None = None  # mean - the band's half-width: calibrated interval, or band_k raw spreads
    cv_hi: Trajectories | None = None  # mean + the band's half-width
    cv_hold_mean: Trajectories | None = None  # predicted ensemble-mean CVs when holding current setpoints
    objective_plan: float | None = None  # economic value of the plan, currency per hour
    objective_hold: float | None = None  # economic value of holding setpoints, currency per hour
    objective_gain: float | None = None  # objective_plan - objective_hold
    objective_gain_spread: float | None = None  # std over the ensemble members of each member's gain (plan - hold)
    active_constraints: tuple[str, ...] = ()  # e.g. "F:mv_high", "F:max_move", "C_b:cv_high", "T:safety_high"
    solve_time_s: float | None = None  # wall-clock time of the solver call
    iterations: int | None = None  # solver iterations: QP active-set (or IPOPT) iterations over all linearisations
    fallback: str | None = None  # why this proposal is not a converged optimum: "last_safe_plan" (the SQP stopped
    # on its budget; the last plan that met every hard limit on the exact twin) or "recovery" (the line is beyond a
    # safety limit now; the plan that brings it back fastest); None for a converged proposal
    plan_ood: tuple[float, ...] | None = None  # the twin's OOD score at each plan step (1.0 = its training p99):
    # the larger of (latent at the step's start, inputs) and (latent at its end, inputs); None without OOD statistics
    plan_ood_max: float | None = None  # the largest of plan_ood
    plan_ood_step: int | None = None  # the step (1-based) where it is largest; its setpoints are mv_plan[...][step - 1]
    band_coverage: float | None = None  # nominal coverage of cv_lo..cv_hi (the twin's calibration); None: raw spreads
    band_scale: Mapping[str, float] | None = None  # per CV, the largest widening of the calibrated band over the
    # plan's steps by the twin's recent errors (the adaptive band; cv_lo..cv_hi and the safety margins include it);
    # None: the band as calibrated

    @property
    def has_proposal(self) -> bool:
        """Return whether this result proposes moves."""
        return self.status is MpcStatus.OPTIMAL and self.mv_plan is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able plain data (status as its string value)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
