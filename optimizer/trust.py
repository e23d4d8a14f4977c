"""The SQP's trust region: how far one linearisation may move the plan, resized by how well the model predicted."""

from __future__ import annotations

import numpy as np

from optimizer.spec import MpcSettings

SHRINK = 0.25  # radius factor after a rejected step, or after a subproblem failed from a feasible reference
GROW = 2.0  # radius factor after a well-confirmed step that reached the region's boundary
ACCEPT_RATIO = 0.1  # keep a step when the exact twin confirms at least this share of the promised cost decrease
GROW_RATIO = 0.75  # ... and widen the region when it confirms at least this share
AT_BOUNDARY = 0.9  # a step of at least this share of the radius reached the boundary
MAX_RADIUS = 10.0  # largest radius, in multiples of the first one (settings.sqp_step)


class TrustRegion:
    """A box of `radius` MV stds around the reference plan, within which the linearised twin is trusted."""

    def __init__(self, settings: MpcSettings, mv_std: np.ndarray) -> None:
        self.radius = settings.sqp_step  # MV stds
        self.max_radius = MAX_RADIUS * settings.sqp_step
        self.tolerance = settings.sqp_tolerance  # MV stds: smaller steps mean the plan has stopped moving
        self.cost_tolerance = settings.sqp_cost_tolerance  # relative cost decrease not worth another step
        self.mv_std = mv_std[:, None]  # (n_mv, 1)

    def box(self, u_ref: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the MV bounds (n_mv, N) of the next subproblem: the limits low/high cut to the region around u_ref."""
        return (np.maximum(low, u_ref - self.radius * self.mv_std), np.minimum(high, u_ref + self.radius * self.mv_std))

    def step(self, u_new: np.ndarray, u_ref: np.ndarray) -> float:
        """Return the largest MV change from u_ref to u_new (n_mv, N), in MV stds."""
        return float(np.max(np.abs(u_new - u_ref) / self.mv_std))

    def converged(self, step: float, predicted: float, cost: float) -> bool:
        """Return whether the plan has stopped: a tiny step, or a model that promises no worthwhile decrease."""
        return step <= self.tolerance or predicted <= self.cost_tolerance * (1 + abs(cost))

    def retry_smaller(self) -> bool:
        """Shrink after a failed subproblem from a feasible reference; return False if already too small to retry."""
        if self.radius <= self.tolerance:
            return False
        self.radius *= SHRINK
        return True

    def judge(self, *, predicted: float, actual: float, step: float, safe: bool) -> bool:
        """Return whether to accept a step whose cost decrease was predicted and actual; resize the region."""
        if safe and actual >= ACCEPT_RATIO * predicted:
            if actual >= GROW_RATIO * predicted and step >= AT_BOUNDARY * self.radius:
                self.radius = min(GROW * self.radius, self.max_radius)
            return True
        self.radius *= SHRINK
        return False

    @property
    def exhausted(self) -> bool:
        """Return whether the region has shrunk below the step tolerance: no step improves the exact cost."""
        return self.radius < self.tolerance
