"""Recovery: with the line beyond a CV safety limit now, the plan that brings it back fastest within the MV limits.

No plan can keep a limit the line is already beyond, so the MPC problem has no feasible plan. The recovery problem
turns each safety limit the line is beyond into a soft limit whose penalty outranks every operating limit (ranked
by priority as usual below it), keeps every other hard limit, and minimises the summed excess over the horizon:
the plan that returns fastest. It is proposed only when it reduces the excess by the horizon's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.limits import CvLimits, Weights
from optimizer.spec import MpcSettings

RECOVERY_WEIGHT = 100.0  # penalty of a recovering CV's excess, in multiples of the largest soft-limit penalty


@dataclass(frozen=True)
class Recovery:
    """The recovery problem of one solve: which safety limits the line is beyond now, and the limits to plan with."""

    y_now: np.ndarray  # (n_cv,) the CVs now, as the twin reads them (with the CV bias)
    beyond: np.ndarray  # (2, n_cv) bool: beyond the safety low (row 0) or high (row 1) limit now
    excess_now: np.ndarray  # (2, n_cv) how far beyond, engineering units (0 where within)
    limits: CvLimits  # the beyond safety limits as top-priority soft limits; every other limit as given
    weights: Weights  # with the recovering CVs' soft weight raised above every rank


def excess(y: np.ndarray, limits: CvLimits) -> np.ndarray:
    """Return how far CVs y (n_cv, ...) are beyond their safety low/high limits: (2, n_cv, ...) >= 0."""
    shape = (-1,) + (1,) * (y.ndim - 1)
    low, high = limits.safety_low.reshape(shape), limits.safety_high.reshape(shape)
    return np.stack([np.maximum(low - y, 0.0), np.maximum(y - high, 0.0)])


def recovery_problem(y_now: np.ndarray, limits: CvLimits, weights: Weights, settings: MpcSettings) -> Recovery | None:
    """Return the recovery problem when the CVs now y_now (n_cv,) are beyond a safety limit, else None."""
    over = excess(y_now, limits)
    beyond = over > 0
    if not beyond.any():
        return None
    low = np.where(beyond[0], np.fmax(limits.low, limits.safety_low), limits.low)
    high = np.where(beyond[1], np.fmin(limits.high, limits.safety_high), limits.high)
    soft = CvLimits(
        low=low,
        high=high,
        safety_low=np.where(beyond[0], -np.inf, limits.safety_low),
        safety_high=np.where(beyond[1], np.inf, limits.safety_high),
    )
    top = RECOVERY_WEIGHT * max(settings.soft_penalty_by_rank)
    raised = np.where(beyond.any(axis=0), top, weights.soft_weight)
    return Recovery(y_now, beyond, over, soft, Weights(weights.price, weights.target, weights.target_weight, raised))


def recovery_note(rec: Recovery, cv: tuple[str, ...], y: np.ndarray, limits: CvLimits, period_s: float) -> str | None:
    """Return what recovery plan y (n_cv, N) achieves, in words; None when it does not reduce the excess."""
    plan = excess(y, limits)  # (2, n_cv, N)
    final, now = plan[:, :, -1], rec.excess_now
    if np.any(final[rec.beyond] >= now[rec.beyond] * (1 - 1e-3)):
        return None
    parts = []
    for side, c in zip(*np.nonzero(rec.beyond), strict=True):
        word = "below its safety low" if side == 0 else "above its safety high"
        limit = limits.safety_low[c] if side == 0 else limits.safety_high[c]
        inside = np.flatnonzero(plan[side, c] <= 0)
        back = next((k for k in inside if np.all(plan[side, c, k:] <= 0)), None)
        now_words = f"{cv[c]}={rec.y_now[c]:.4g} is {word} limit {limit:g} now"
        if back is not None:
            parts.append(f"{now_words}, back within it from step {back + 1} ({(back + 1) * period_s / 60:.3g} min)")
        else:
            parts.append(f"{now_words}, {final[side, c]:.4g} beyond it by the horizon's end (not yet back within it)")
    return (
        "recovery plan: the line is beyond a hard safety limit now, so no plan keeps every hard limit; this plan "
        "brings it back fastest within the MV and move limits: " + "; ".join(parts)
    )
