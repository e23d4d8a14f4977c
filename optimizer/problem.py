"""The MPC as one nonlinear program in CasADi, the reference formulation that IPOPT solves (optimizer.reference).

Built once per (line, model version) and solved with new parameters each time. The platform's controller solves
the same problem condensed onto the MV plan (optimizer.condensed, optimizer.sqp); tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import casadi as ca
import numpy as np

from optimizer.bands import plan_band
from optimizer.model import Dynamics
from optimizer.spec import MpcSettings, MpcSpec, objective_value


@dataclass(frozen=True)
class Block:
    """A named (rows, cols) matrix stored column by column (one column per step) inside a stacked vector."""

    name: str
    start: int
    rows: int
    cols: int

    @property
    def stop(self) -> int:
        """Return the index one past the block's end."""
        return self.start + self.rows * self.cols

    def take(self, vector: np.ndarray) -> np.ndarray:
        """Return the block of a stacked vector as a (rows, cols) matrix."""
        return np.asarray(vector[self.start : self.stop]).reshape(self.cols, self.rows).T

    def put(self, vector: np.ndarray, value: np.ndarray | float) -> None:
        """Write a (rows, cols) matrix (or a scalar) into the block of a stacked vector."""
        vector[self.start : self.stop] = np.broadcast_to(value, (self.rows, self.cols)).T.reshape(-1)


class Stack:
    """Named matrices stacked into one column vector, as CasADi wants decision variables, parameters, constraints."""

    def __init__(self, parts: Sequence[tuple[str, Any]]) -> None:  # (name, SX or MX matrix)
        self.blocks: dict[str, Block] = {}
        start = 0
        for name, expr in parts:
            self.blocks[name] = Block(name, start, expr.size1(), expr.size2())
            start += expr.numel()
        self.size = start
        self.expr = ca.vertcat(*[ca.vec(expr) for _, expr in parts])

    def __getitem__(self, name: str) -> Block:
        return self.blocks[name]

    def zeros(self) -> np.ndarray:
        """Return a numeric vector of the stack's size, all zeros."""
        return np.zeros(self.size)


class MpcProblem:
    """The NLP of one SQP step, built once: the twin linearised along a reference plan (parameters), exact costs.

    Solving it repeatedly, re-linearising at each solution, converges to a KKT point of the NLP on the exact twin:
    at a fixed point the reference plan is the solution, where the linearisation is exact in value and slope.
    """

    def __init__(self, dynamics: Dynamics, spec: MpcSpec, settings: MpcSettings) -> None:
        self.dynamics, self.spec, self.settings = dynamics, spec, settings
        n = settings.horizon
        dyn = dynamics
        n_cv, n_mv, n_dv, n_z, m = len(dyn.cv), len(dyn.mv), len(dyn.dv), dyn.members * dyn.nz, dyn.members
        cv_std, mv_std = ca.DM(dyn.cv_std), ca.DM(dyn.mv_std)
        stats = _ensemble_stats(dyn, ca.SX)

        # ============================================================ decision variables
        u = ca.SX.sym("U", n_mv, n)  # setpoints applied during step k, engineering units
        z = ca.SX.sym("Z", n_z, n)  # ensemble latents at the end of step k (multiple shooting)
        y_members = ca.SX.sym("Y", m * n_cv, n)  # each member's CVs at the end of step k (lifted: sparse KKT)
        s = ca.SX.sym("S", n_cv, n)  # soft-limit slack of each CV at the end of step k, in CV stds

        # ============================================================ parameters
        z0 = ca.SX.sym("z0", n_z)  # current ensemble latents, member-major
        u_now = ca.SX.sym("u_now", n_mv)  # setpoints in force now
        d = ca.SX.sym("D", n_dv, n)  # DV forecast for step k
        price = ca.SX.sym("price", len(spec.objective_terms))  # currency/h per unit of each term's product
        target = ca.SX.sym("target", len(spec.targets))
        target_weight = ca.SX.sym("target_weight", len(spec.targets))
        soft_weight = ca.SX.sym("soft_weight", n_cv)  # per CV, from its rank
        # the reference plan and the exact twin's values and slopes along it (see linearize)
        u_ref = ca.SX.sym("U_ref", n_mv, n)
        z_ref = ca.SX.sym("Z_ref", n_z, n)
        a_ref = ca.SX.sym("A", dyn.nz, n_z * n)  # per step: each member's d z_next / d z, side by side
        b_ref = ca.SX.sym("B", n_z, n_mv * n)  # per step: d z_next / d u
        y_ref = ca.SX.sym("Y_ref", m * n_cv, n)  # per step: each member's CVs at the end of the step
        c_ref = ca.SX.sym("C", n_cv, n_z * n)  # per step: each member's d y / d z, side by side

        # ============================================================ dynamics (linearised twin)
        dz = z - z_ref
        dz_start = ca.horzcat(ca.SX.zeros(n_z, 1), dz[:, : n - 1])  # the current state is fixed: no deviation
        defect = dz - _linear_step(dyn).map(n)(dz_start, u - u_ref, a_ref, b_ref)  # (n_z, N) = 0
        readout_defect = y_members - y_ref - _linear_readout(dyn).map(n)(dz, c_ref)  # (M*n_cv, N) = 0
        y, var_n = stats.map(n)(y_members)  # (n_cv, N) ensemble mean; variance in CV stds^2
        # safety half-width (optimizer.bands): the twin's calibrated interval, or safety_spread_k raw spreads
        self.safety = plan_band(dyn.calibration, m, n_cv, n, settings.safety_spread_k, smooth=True)
        band = self.safety
        half = (
            ca.DM(band.a) * ca.sqrt(band.b * var_n + ca.repmat(ca.DM(band.c), 1, n)) * ca.repmat(cv_std, 1, n)
            if np.any(band.a)
            else ca.SX.zeros(n_cv, n)
        )
        moves = u - ca.horzcat(u_now, u[:, : n - 1])  # (n_mv, N)

        # ============================================================ objective
        value = economic_value(dyn, spec, y, u, d, price)  # (1, N) currency per hour
        economic = settings.economic_weight * ca.sum2(value) / n
        move_suppression = settings.move_weight * ca.sumsqr(moves / ca.repmat(mv_std, 1, n)) / n
        uncertainty: Any = settings.uncertainty_weight * ca.sum1(ca.sum2(var_n)) / n if m > 1 else 0
        tracking: Any = 0
        for i, tgt in enumerate(spec.targets):
            tracking += target_weight[i] * ca.sumsqr(y[dyn.cv.index(tgt.tag), :] - target[i]) / n
        soft_penalty = ca.dot(soft_weight, ca.sum2(s + s**2)) / n  # exact (L1) plus smoothing (L2) penalty
        cost = -economic + tracking + move_suppression + uncertainty + soft_penalty

        # ============================================================ constraints
        std_n = ca.repmat(cv_std, 1, n)
        self.x = Stack([("U", u), ("Z", z), ("Y", y_members), ("S", s)])
        self.p = Stack(
            [
                ("z0", z0),
                ("u_now", u_now),
                ("D", d),
                ("price", price),
                ("target", target),
                ("target_weight", target_weight),
                ("soft_weight", soft_weight),
                ("U_ref", u_ref),
                ("Z_ref", z_ref),
                ("A", a_ref),
                ("B", b_ref),
                ("Y_ref", y_ref),
                ("C", c_ref),
            ]
        )
        self.g = Stack(
            [
                ("dynamics", defect),  # = 0
                ("readout", readout_defect),  # = 0
                ("max_move", moves),  # within ± per-step move limit
                ("cv_low", y + s * std_n),  # >= operating low (soft through the slack)
                ("cv_high", y - s * std_n),  # <= operating high
                ("safety_low", y - half),  # >= safety low (hard)
                ("safety_high", y + half),  # <= safety high (hard)
            ]
        )
        self.cost = ca.Function("cost", [self.x.expr, self.p.expr], [cost])
        self._nlp = {"x": self.x.expr, "p": self.p.expr, "f": cost, "g": self.g.expr}
        self._solver: ca.Function | None = None  # IPOPT, built on first use

        # ============================================================ the exact twin, numerically (dense MX)
        stats = _ensemble_stats(dyn, ca.MX)
        z0_, u_, d_ = ca.MX.sym("z0", n_z), ca.MX.sym("U", n_mv, n), ca.MX.sym("D", n_dv, n)
        price_ = ca.MX.sym("price", len(spec.objective_terms))
        # linearize: values and slopes along a plan (the SQP reference); evaluate: predictions and economics.
        lin = dyn.linearization_function().mapaccum("linearize_plan", n)
        z_sim, a_sim, b_sim, y_sim, c_sim = lin(z0_, u_, d_)
        self.linearize = ca.Function(
            "linearize", [z0_, u_, d_], [z_sim, a_sim, b_sim, y_sim, c_sim], ["z0", "U", "D"], ["Z", "A", "B", "Y", "C"]
        )
        z_roll = dyn.step_function().mapaccum("rollout", n)(z0_, u_, d_)  # values only: no slopes computed
        mean_sim, var_sim = stats.map(n)(dyn.readout_function().map(n)(z_roll))
        self.evaluate = ca.Function(
            "evaluate",
            [z0_, u_, d_, price_],
            [mean_sim, ca.sqrt(var_sim) * std_n, ca.sum2(economic_value(dyn, spec, mean_sim, u_, d_, price_)) / n],
            ["z0", "U", "D", "price"],
            ["Y", "spread", "value"],
        )
        zc = ca.MX.sym("z", n_z)
        self.current = ca.Function("current", [zc], [stats(dyn.readout_function()(zc))[0]], ["z"], ["y"])

    @property
    def solver(self) -> ca.Function:
        """Return the IPOPT solver of the linearised NLP, building it the first time."""
        if self._solver is None:
            self._solver = ca.nlpsol("mpc", "ipopt", self._nlp, _ipopt_options(self.settings))
        return self._solver


def _linear_step(dyn: Dynamics) -> ca.Function:
    """Return step(dz (M*nz,), du (n_mv,), A (nz, M*nz), B (M*nz, n_mv)) -> dz_next, member blocks of A apart."""
    n_z = dyn.members * dyn.nz
    dz, du = ca.SX.sym("dz", n_z), ca.SX.sym("du", len(dyn.mv))
    a, b = ca.SX.sym("A", dyn.nz, n_z), ca.SX.sym("B", n_z, len(dyn.mv))
    blocks = [
        ca.mtimes(a[:, k * dyn.nz : (k + 1) * dyn.nz], dz[k * dyn.nz : (k + 1) * dyn.nz]) for k in range(dyn.members)
    ]
    return ca.Function("linear_step", [dz, du, a, b], [ca.vertcat(*blocks) + ca.mtimes(b, du)])


def _linear_readout(dyn: Dynamics) -> ca.Function:
    """Return readout(dz (M*nz,), C (n_cv, M*nz)) -> dy (M*n_cv,), member blocks of C apart."""
    n_z = dyn.members * dyn.nz
    dz, c = ca.SX.sym("dz", n_z), ca.SX.sym("C", len(dyn.cv), n_z)
    blocks = [
        ca.mtimes(c[:, k * dyn.nz : (k + 1) * dyn.nz], dz[k * dyn.nz : (k + 1) * dyn.nz]) for k in range(dyn.members)
    ]
    return ca.Function("linear_readout", [dz, c], [ca.vertcat(*blocks)])


def economic_value(dyn: Dynamics, spec: MpcSpec, y: Any, u: Any, d: Any, price: Any) -> Any:
    """Return the value per step (1, N): sum over terms of price * product of the tags (CV, MV or DV rows)."""
    rows = {name: y[i, :] for i, name in enumerate(dyn.cv)}
    rows |= {name: u[i, :] for i, name in enumerate(dyn.mv)}
    rows |= {name: d[i, :] for i, name in enumerate(dyn.dv)}
    return objective_value(spec, rows, price, zero=0 * y[0, :])


def _ensemble_stats(dyn: Dynamics, sym: type) -> ca.Function:
    """Return stats(y (M*n_cv,) member-major) -> (mean (n_cv,), sample variance over members in CV stds^2 (n_cv,))."""
    y_all = sym.sym("y", dyn.members * len(dyn.cv))  # type: ignore[attr-defined]
    y = ca.reshape(y_all, len(dyn.cv), dyn.members)  # (n_cv, M)
    mean = ca.sum2(y) / dyn.members
    if dyn.members > 1:
        dev = (y - ca.repmat(mean, 1, dyn.members)) / ca.repmat(ca.DM(dyn.cv_std), 1, dyn.members)
        var = ca.sum2(dev**2) / (dyn.members - 1)
    else:
        var = sym.zeros(len(dyn.cv))  # type: ignore[attr-defined]
    return ca.Function("ensemble_stats", [y_all], [mean, var], ["y"], ["mean", "var_n"])


def _ipopt_options(settings: MpcSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "print_time": False,
        "ipopt.print_level": 0,
        "ipopt.sb": "yes",  # no banner: library code never prints
        "ipopt.max_iter": settings.max_iterations,
        "ipopt.max_wall_time": settings.max_solver_time_s,
        "ipopt.max_cpu_time": settings.max_solver_time_s,
        "ipopt.tol": settings.tolerance,
        "ipopt.hessian_approximation": settings.hessian,
        "ipopt.warm_start_init_point": "yes",
        "ipopt.warm_start_bound_push": 1e-6,
        "ipopt.warm_start_mult_bound_push": 1e-6,
        "ipopt.mu_init": 1e-3,
    }
    opts |= {f"ipopt.{k}": v for k, v in settings.ipopt_options.items()}
    return opts
