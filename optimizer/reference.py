"""The reference solver of the same MPC: IPOPT on the multiple-shooting NLP of the twin linearised along the plan.

Not used by the platform. Tests compare its plans with `MpcController`'s (the condensed SQP), and `bench mpc`
times it beside them. Same inputs, checks, limits, trust region and result as the controller; only the
subproblem of each linearisation differs (optimizer.problem instead of a condensed dense QP).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.blas import blas_threads
from optimizer.checks import SolveInputs, check_compatible, prepare_solve
from optimizer.dynamics import ExportError, TwinDynamics
from optimizer.limits import CvLimits, SolveLimits, soft_slack
from optimizer.model import Dynamics
from optimizer.problem import MpcProblem, economic_value
from optimizer.proposal import hard_violation, no_proposal, proposal
from optimizer.result import MpcResult, MpcStatus
from optimizer.spec import MpcSettings, MpcSpec
from optimizer.sqp import project, shift_steps
from optimizer.trust import TrustRegion

_STATUS = {
    "Solve_Succeeded": MpcStatus.OPTIMAL,
    "Solved_To_Acceptable_Level": MpcStatus.OPTIMAL,
    "Infeasible_Problem_Detected": MpcStatus.INFEASIBLE,
    "Maximum_CpuTime_Exceeded": MpcStatus.TIMEOUT,
    "Maximum_WallTime_Exceeded": MpcStatus.TIMEOUT,
    "Maximum_Iterations_Exceeded": MpcStatus.TIMEOUT,
}


@dataclass(frozen=True)
class _Vectors:
    """One solve's bounds as IPOPT wants them: on the stacked decision vector x and constraint vector g."""

    lbx: np.ndarray
    ubx: np.ndarray
    lbg: np.ndarray
    ubg: np.ndarray


@dataclass(frozen=True)
class _Reference:
    x: np.ndarray  # decision vector on the exact twin: U, its rollout Z and member CVs Y, the slack S it needs
    p: np.ndarray  # parameters with the twin linearised along U
    cost: float  # the NLP cost there
    safe: bool  # whether the exact twin keeps every safety limit there


@dataclass(frozen=True)
class _WarmStart:
    x: np.ndarray
    lam_x: np.ndarray
    lam_g: np.ndarray


class IpoptReferenceController:
    """`MpcController`'s problem solved by IPOPT on each linearisation: same constructor, `solve` and results."""

    def __init__(
        self,
        dynamics: Dynamics | None,
        spec: MpcSpec,
        settings: MpcSettings | None = None,
        *,
        export_error: str | None = None,
    ) -> None:
        self.dynamics, self.spec = dynamics, spec
        self.settings = settings or MpcSettings()
        problems = [export_error] if export_error else check_compatible(dynamics, spec, self.settings)
        self.incompatibility: str | None = "; ".join(p for p in problems if p) or None
        self.problem = None if self.incompatibility or dynamics is None else MpcProblem(dynamics, spec, self.settings)
        self._warm: _WarmStart | None = None

    @classmethod
    def from_export(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        spec: MpcSpec,
        settings: MpcSettings | None = None,
    ) -> IpoptReferenceController:
        """Build from a twin export; a bad or mismatched export gives a controller whose solves say 'incompatible'."""
        try:
            dynamics = TwinDynamics.from_export(meta, arrays)
        except ExportError as exc:
            return cls(None, spec, settings, export_error=str(exc))
        return cls(dynamics, spec, settings)

    def reset(self) -> None:
        """Forget the previous solution, so the next solve starts cold from holding the current setpoints."""
        self._warm = None

    def solve(
        self,
        *,
        z0: np.ndarray,
        mv: Mapping[str, float],
        dv_forecast: Mapping[str, float | Sequence[float]] | None = None,
        spec: MpcSpec | None = None,
        cv_bias: Mapping[str, float] | None = None,
    ) -> MpcResult:
        """Plan as `MpcController.solve` does, with IPOPT solving each linearisation."""
        inputs = prepare_solve(
            self.dynamics,
            self.spec,
            self.settings,
            self.incompatibility,
            spec=spec or self.spec,
            z0=z0,
            mv=mv,
            dv_forecast=dv_forecast or {},
            cv_bias=cv_bias,
        )
        if isinstance(inputs, MpcResult):
            return inputs
        with blas_threads(self.settings.blas_threads):
            return self._plan(inputs)

    def _plan(self, inputs: SolveInputs) -> MpcResult:
        """Solve by sequential linearisation: IPOPT on the twin linearised along the plan until the plan stops."""
        pr, dyn, settings = self.problem, self.dynamics, self.settings
        assert pr is not None and dyn is not None
        n, period = settings.horizon, dyn.sample_period_s
        z_now, u_now, d_plan, bias, limits = inputs.z_now, inputs.u_now, inputs.d_plan, inputs.bias, inputs.limits
        mv, u_block = limits.mv, pr.x["U"]
        bounds = self._vectors(limits)
        x, lam_x, lam_g = self._initial_guess(u_now)
        u_ref = project(u_block.take(x), u_now, mv.low, mv.high, mv.step_move)
        region = TrustRegion(settings, dyn.mv_std)
        started, iterations, raw = time.perf_counter(), 0, "not started"
        ref = self._linearize(x, self._parameters(inputs), z_now, u_ref, d_plan, limits.cv, bias)
        for linearisations in range(1, settings.sqp_iterations + 1):  # noqa: B007 (reported after the loop)
            lbx, ubx = bounds.lbx.copy(), bounds.ubx.copy()
            low, high = region.box(u_ref, mv.low, mv.high)
            u_block.put(lbx, low)
            u_block.put(ubx, high)
            try:
                sol = pr.solver(
                    x0=ref.x, lam_x0=lam_x, lam_g0=lam_g, p=ref.p, lbx=lbx, ubx=ubx, lbg=bounds.lbg, ubg=bounds.ubg
                )
                stats = pr.solver.stats()
            except RuntimeError as exc:  # an evaluation error inside IPOPT's callbacks
                sol, stats = None, {"return_status": f"CasADi error: {exc}"}
            iterations += int(stats.get("iter_count", 0))
            raw = str(stats.get("return_status", "unknown"))
            status = _STATUS.get(raw, MpcStatus.SOLVER_FAILED)
            if time.perf_counter() - started > settings.max_solver_time_s:
                status = MpcStatus.TIMEOUT
            if status in (MpcStatus.INFEASIBLE, MpcStatus.SOLVER_FAILED) and ref.safe and region.retry_smaller():
                # The reference plan is feasible, so IPOPT lost its way (e.g. from stale multipliers): retry smaller.
                lam_x, lam_g = np.zeros_like(lam_x), np.zeros_like(lam_g)
                continue
            if status is not MpcStatus.OPTIMAL or sol is None:
                return self._failure(inputs, status, raw, time.perf_counter() - started, iterations)
            x_new = np.asarray(sol["x"]).reshape(-1)
            u_new = project(u_block.take(x_new), u_now, mv.low, mv.high, mv.step_move)
            step, predicted = region.step(u_new, u_ref), ref.cost - float(sol["f"])
            if region.converged(step, predicted, ref.cost):
                break
            trial = self._linearize(x_new, ref.p, z_now, u_new, d_plan, limits.cv, bias)
            if region.judge(predicted=predicted, actual=ref.cost - trial.cost, step=step, safe=trial.safe):
                ref, u_ref = trial, u_new
                lam_x, lam_g = (np.asarray(sol[k]).reshape(-1) for k in ("lam_x", "lam_g"))
            elif region.exhausted:
                return self._failure(
                    inputs,
                    MpcStatus.SOLVER_FAILED,
                    f"{raw}, but no step improves the exact twin's cost",
                    time.perf_counter() - started,
                    iterations,
                )
        else:
            elapsed = time.perf_counter() - started
            return self._failure(
                inputs,
                MpcStatus.TIMEOUT if elapsed > settings.max_solver_time_s else MpcStatus.NOT_CONVERGED,
                f"{raw}, plan still moving after {settings.sqp_iterations} linearisations",
                time.perf_counter() - started,
                iterations,
            )
        elapsed = time.perf_counter() - started
        if elapsed > settings.max_solver_time_s:
            return self._failure(inputs, MpcStatus.TIMEOUT, raw, elapsed, iterations)
        price = pr.p["price"].take(ref.p).reshape(-1)
        hold_plan = np.repeat(u_now[:, None], n, axis=1)
        y, spread, value = (np.asarray(v) for v in pr.evaluate(z_now, u_ref, d_plan, price))
        y, value = self._biased(y, value, u_ref, d_plan, price, bias)
        var_n = (spread / dyn.cv_std[:, None]) ** 2  # sample variance over members, CV stds^2
        violation = hard_violation(settings, dyn, limits, u_ref, u_now, y, var_n)
        if violation:
            self._warm = None
            return MpcResult(
                MpcStatus.SOLVER_FAILED,
                f"IPOPT returned {raw} but {violation}; no proposal",
                n,
                period,
                solve_time_s=elapsed,
                iterations=iterations,
            )
        self._warm = _WarmStart(ref.x, lam_x, lam_g)
        y_hold, _, value_hold = (np.asarray(v) for v in pr.evaluate(z_now, hold_plan, d_plan, price))
        y_hold, value_hold = self._biased(y_hold, value_hold, hold_plan, d_plan, price, bias)
        return proposal(
            dyn,
            settings,
            limits,
            u=u_block.take(ref.x),
            u_now=u_now,
            d_plan=d_plan,
            y=y,
            var_n=var_n,
            value=float(value.item()),
            y_hold=y_hold,
            value_hold=float(value_hold.item()),
            raw=f"IPOPT: {raw}",
            elapsed=elapsed,
            iterations=iterations,
            linearisations=linearisations,
        )

    def _biased(
        self,
        y: np.ndarray,
        value: np.ndarray,
        u: np.ndarray,
        d_plan: np.ndarray,
        price: np.ndarray,
        bias: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the exact twin's mean CVs (n_cv, N) and value shifted by the CV bias (unchanged without one)."""
        if bias is None or self.dynamics is None:
            return y, value
        y = y + bias[:, None]
        value = np.asarray(np.sum(economic_value(self.dynamics, self.spec, y, u, d_plan, price)) / y.shape[1])
        return y, value

    def _failure(self, inputs: SolveInputs, status: MpcStatus, raw: str, elapsed: float, iterations: int) -> MpcResult:
        """Return a result without proposal that says why, and drop the warm start."""
        pr, dyn, settings = self.problem, self.dynamics, self.settings
        assert pr is not None and dyn is not None
        self._warm = None
        y_now = np.asarray(pr.current(inputs.z_now)).reshape(-1)  # (n_cv,) ensemble mean now
        return no_proposal(
            dyn,
            inputs.spec,
            settings,
            status=status,
            raw=raw,
            solver="IPOPT",
            budget=(
                f"{settings.max_solver_time_s} s, {settings.max_iterations} IPOPT iterations, "
                f"{settings.sqp_iterations} linearisations"
            ),
            y_now=y_now if inputs.bias is None else y_now + inputs.bias,
            elapsed=elapsed,
            iterations=iterations,
        )

    # ---------------------------------------------------------------- the NLP's vectors

    def _vectors(self, limits: SolveLimits) -> _Vectors:
        """Return the bounds of the stacked decision and constraint vectors for this solve's limits."""
        pr = self.problem
        assert pr is not None
        lbx, ubx = np.full(pr.x.size, -np.inf), np.full(pr.x.size, np.inf)
        pr.x["U"].put(lbx, limits.mv.low)
        pr.x["U"].put(ubx, limits.mv.high)
        pr.x["S"].put(lbx, 0.0)
        lbg, ubg = np.full(pr.g.size, -np.inf), np.full(pr.g.size, np.inf)
        for name in ("dynamics", "readout"):
            pr.g[name].put(lbg, 0.0)
            pr.g[name].put(ubg, 0.0)
        pr.g["max_move"].put(lbg, -limits.mv.step_move)
        pr.g["max_move"].put(ubg, limits.mv.step_move)
        cv = limits.cv
        for name, vector, values in (
            ("cv_low", lbg, cv.low),
            ("cv_high", ubg, cv.high),
            ("safety_low", lbg, cv.safety_low),
            ("safety_high", ubg, cv.safety_high),
        ):
            pr.g[name].put(vector, values[:, None])
        return _Vectors(lbx, ubx, lbg, ubg)

    def _parameters(self, inputs: SolveInputs) -> np.ndarray:
        """Return the parameter vector of this solve (the linearisation blocks still zero)."""
        pr = self.problem
        assert pr is not None
        p, w = pr.p.zeros(), inputs.weights
        for name, value in (
            ("z0", inputs.z_now[:, None]),
            ("u_now", inputs.u_now[:, None]),
            ("D", inputs.d_plan),
            ("price", w.price[:, None]),
            ("target", w.target[:, None]),
            ("target_weight", w.target_weight[:, None]),
            ("soft_weight", w.soft_weight[:, None]),
        ):
            pr.p[name].put(p, value)
        return p

    def _initial_guess(self, u_now: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return x0 and multipliers: the previous solution shifted one step, or holding the current setpoints."""
        pr = self.problem
        assert pr is not None
        x0, lam_x0, lam_g0 = pr.x.zeros(), pr.x.zeros(), pr.g.zeros()
        if self._warm is None:
            pr.x["U"].put(x0, np.repeat(u_now[:, None], self.settings.horizon, axis=1))
            return x0, lam_x0, lam_g0
        for stack, src, dst in (
            (pr.x, self._warm.x, x0),
            (pr.x, self._warm.lam_x, lam_x0),
            (pr.g, self._warm.lam_g, lam_g0),
        ):
            for block in stack.blocks.values():
                block.put(dst, shift_steps(block.take(src)))
        return x0, lam_x0, lam_g0

    def _linearize(
        self,
        x: np.ndarray,
        p: np.ndarray,
        z_now: np.ndarray,
        u: np.ndarray,
        d_plan: np.ndarray,
        cv: CvLimits,
        bias: np.ndarray | None = None,
    ) -> _Reference:
        """Return plan u lifted onto the exact twin, with parameters p holding the twin linearised along it."""
        pr, dyn = self.problem, self.dynamics
        assert pr is not None and dyn is not None
        z_ref, a, b, y_ref, c = (np.asarray(v) for v in pr.linearize(z_now, u, d_plan))
        if bias is not None:  # every member's CVs shifted by the constant output disturbance (member-major rows)
            y_ref = y_ref + np.tile(bias, dyn.members)[:, None]
        p = p.copy()
        for name, value in (("U_ref", u), ("Z_ref", z_ref), ("A", a), ("B", b), ("Y_ref", y_ref), ("C", c)):
            pr.p[name].put(p, value)
        x = x.copy()
        for name, value in (("U", u), ("Z", z_ref), ("Y", y_ref)):
            pr.x[name].put(x, value)
        members = y_ref.reshape(dyn.members, len(dyn.cv), -1)  # (M, n_cv, N)
        mean = members.mean(axis=0)
        pr.x["S"].put(x, soft_slack(mean, cv, dyn.cv_std))
        var_n = members.var(axis=0, ddof=1) / dyn.cv_std[:, None] ** 2 if dyn.members > 1 else 0 * mean
        half = pr.safety.half(var_n, dyn.cv_std)
        tol = 1e-6 * dyn.cv_std[:, None]
        safe = bool(
            np.all(mean - half >= cv.safety_low[:, None] - tol) and np.all(mean + half <= cv.safety_high[:, None] + tol)
        )
        return _Reference(x, p, float(pr.cost(x, p)), safe)
