"""Plain CasADi dynamics beside the twin export: a first-principles model x_next = f(x, u, d) with a CV readout.

`MpcController(CasadiModel(...), spec, settings)` plans on such a model with the same objective, constraints and
solver as on a twin, so a benchmark can compare a learned twin against the true plant model, differing only in the
model. The model is deterministic (one "member", no spread); inputs are in engineering units.
"""

from __future__ import annotations

from dataclasses import dataclass

import casadi as ca
import numpy as np

from optimizer.dynamics import TwinDynamics
from optimizer.linearize import Linearisation


@dataclass(frozen=True, eq=False)
class CasadiModel:
    """x_next = step(x, u, d) over one sample period and y = readout(x), with the scales the objective uses."""

    cv: tuple[str, ...]  # CV tag names, in readout order
    mv: tuple[str, ...]  # MV tag names, in u order
    dv: tuple[str, ...]  # DV tag names, in d order (may be empty)
    sample_period_s: float  # one step, seconds
    step: ca.Function  # (x (nx,), u (n_mv,), d (n_dv,)) -> x_next (nx,)
    readout: ca.Function  # x (nx,) -> y (n_cv,) engineering units
    cv_std: np.ndarray  # (n_cv,) scale of each CV: soft-limit penalties and targets are per CV std
    mv_std: np.ndarray  # (n_mv,) scale of each MV: move suppression and the SQP step are per MV std
    mv_min: np.ndarray  # (n_mv,) range the model may be trusted in (often the MV limits themselves)
    mv_max: np.ndarray  # (n_mv,)

    # the fields of the twin's dynamics that the controller reads, for a one-member deterministic model
    members = 1
    calibration = None  # no calibrated intervals: a first-principles model has no band
    ood = None  # no training distribution to score plans against

    @property
    def nz(self) -> int:
        """Return the state dimension."""
        return int(self.step.size1_in(0))

    @property
    def cv_mean(self) -> np.ndarray:
        """Return zeros: the model works in engineering units."""
        return np.zeros(len(self.cv))

    @property
    def mv_mean(self) -> np.ndarray:
        """Return zeros: the model works in engineering units."""
        return np.zeros(len(self.mv))

    @property
    def dv_mean(self) -> np.ndarray:
        """Return zeros: the model works in engineering units."""
        return np.zeros(len(self.dv))

    @property
    def dv_std(self) -> np.ndarray:
        """Return ones: the model works in engineering units."""
        return np.ones(len(self.dv))

    @property
    def train_mv_min(self) -> np.ndarray:
        """Return the low end of the trusted MV range."""
        return self.mv_min

    @property
    def train_mv_max(self) -> np.ndarray:
        """Return the high end of the trusted MV range."""
        return self.mv_max

    @property
    def train_dv_min(self) -> np.ndarray:
        """Return -inf: no DV range limits a first-principles model."""
        return np.full(len(self.dv), -np.inf)

    @property
    def train_dv_max(self) -> np.ndarray:
        """Return +inf: no DV range limits a first-principles model."""
        return np.full(len(self.dv), np.inf)

    def step_function(self) -> ca.Function:
        """Return step(z, u, d) -> z_next, as the twin's dynamics do."""
        return self.step

    def readout_function(self) -> ca.Function:
        """Return readout(z) -> y."""
        return self.readout

    def linearization_function(self) -> ca.Function:
        """Return lin(z, u, d) -> (z_next, A, B, y_next, C), as the twin's dynamics do (one member)."""
        z, u, d = ca.MX.sym("z", self.nz), ca.MX.sym("u", len(self.mv)), ca.MX.sym("d", len(self.dv))
        z_next = self.step(z, u, d)
        zr = ca.MX.sym("zr", self.nz)
        slope = ca.Function("readout_slope", [zr], [ca.jacobian(self.readout(zr), zr)])
        return ca.Function(
            "model_linearization",
            [z, u, d],
            [z_next, ca.jacobian(z_next, z), ca.jacobian(z_next, u), self.readout(z_next), slope(z_next)],
            ["z", "u", "d"],
            ["z_next", "A", "B", "y_next", "C"],
        )

    def rollout(self, z0: np.ndarray, u_plan: np.ndarray, d_plan: np.ndarray) -> np.ndarray:
        """Return the CVs y[k] (N, 1, n_cv) under u_plan (N, n_mv) and d_plan (N, n_dv) from z0 (1, nx)."""
        n = u_plan.shape[0]
        x = self.step.mapaccum(n)(np.asarray(z0, dtype=float).reshape(-1), u_plan.T, d_plan.T)
        return np.asarray(self.readout.map(n)(x)).T[:, None, :]


class CasadiPlan:
    """A CasADi model rolled out and differentiated along a whole plan: the condensed SQP's model interface."""

    def __init__(self, model: CasadiModel, horizon: int, tail: int = 0) -> None:
        n, n_mv = horizon, len(model.mv)
        self.n_cv, self.n, self.tail = len(model.cv), n, tail
        z0, u, d = ca.MX.sym("z0", model.nz), ca.MX.sym("U", n_mv, n), ca.MX.sym("D", len(model.dv), n)
        # past the plan (the terminal tail) its last setpoints and forecast are held
        u_all = ca.horzcat(u, ca.repmat(u[:, n - 1], 1, tail))
        d_all = ca.horzcat(d, ca.repmat(d[:, n - 1], 1, tail)) if len(model.dv) else ca.MX(0, n + tail)
        y = model.readout.map(n + tail)(model.step.mapaccum(n + tail)(z0, u_all, d_all))  # (n_cv, N + tail)
        rollout = ca.Function("model_rollout", [z0, u, d], [y])
        plan = ca.Function("model_plan", [z0, u, d], [y, ca.jacobian(ca.vec(y), ca.vec(u))])
        try:  # scalar (SX) code runs faster for small models; keep MX where the model cannot be expanded
            rollout, plan = rollout.expand(), plan.expand()
        except RuntimeError:
            pass
        self._rollout, self._plan, self._readout = rollout, plan, model.readout

    def readout_now(self, z0: np.ndarray) -> np.ndarray:
        """Return the CVs (1, n_cv) read from state z0 (nx,), as one member."""
        return np.asarray(self._readout(np.asarray(z0, dtype=float).reshape(-1))).reshape(1, -1)

    def rollout(self, z0: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Return CVs (N + tail, 1, n_cv) under plan u (n_mv, N) (then held) and forecast d (n_dv, N) from z0 (nx,)."""
        return np.asarray(self._rollout(z0, u, d)).T[:, None, :]

    def linearise(self, z0: np.ndarray, u: np.ndarray, d: np.ndarray) -> Linearisation:
        """Return the rollout along plan u and its sensitivity to the whole plan, as one member."""
        y, jac = self._plan(z0, u, d)
        n = self.n
        g = np.asarray(jac).reshape(-1, self.n_cv, n * u.shape[0])[:, None]  # vec(Y) step-major: (N+K, 1, n_cv, nu)
        y = np.asarray(y).T[:, None, :]
        if not self.tail:
            return Linearisation(u=np.array(u, dtype=float), y=y, g=g)
        return Linearisation(u=np.array(u, dtype=float), y=y[:n], g=g[:n], y_tail=y[n:], g_tail=g[n:])


Dynamics = TwinDynamics | CasadiModel  # what a controller plans on
