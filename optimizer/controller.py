"""Economic MPC of one line on one twin version: check inputs, solve warm-started, return a complete result."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.blas import blas_threads
from optimizer.checks import check_compatible, read_inputs
from optimizer.condensed import CvLimits, Weights
from optimizer.dynamics import ExportError, TwinDynamics
from optimizer.model import Dynamics
from optimizer.problem import VAR_EPS, MpcProblem, economic_value
from optimizer.result import MpcResult, MpcStatus
from optimizer.spec import MpcSettings, MpcSpec
from optimizer.sqp import CondensedSqp, MvBounds, project

_STATUS = {
    "Solve_Succeeded": MpcStatus.OPTIMAL,
    "Solved_To_Acceptable_Level": MpcStatus.OPTIMAL,
    "Infeasible_Problem_Detected": MpcStatus.INFEASIBLE,
    "Maximum_CpuTime_Exceeded": MpcStatus.TIMEOUT,
    "Maximum_WallTime_Exceeded": MpcStatus.TIMEOUT,
    "Maximum_Iterations_Exceeded": MpcStatus.TIMEOUT,
}


@dataclass(frozen=True)
class _Bounds:
    lbx: np.ndarray
    ubx: np.ndarray
    lbg: np.ndarray
    ubg: np.ndarray
    mv_trust: tuple[np.ndarray, np.ndarray]  # (n_mv,) whether the low/high bound comes from the training range
    max_move: np.ndarray  # (n_mv,) per-step move limit, inf if none


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


class MpcController:
    """Build the problem once per (line, twin version); call `solve` every sample period."""

    def __init__(self, dynamics: Dynamics | None, spec: MpcSpec, settings: MpcSettings | None = None,
                 *, export_error: str | None = None) -> None:
        self.dynamics, self.spec = dynamics, spec
        self.settings = settings or MpcSettings()
        problems = [export_error] if export_error else check_compatible(dynamics, spec, self.settings)
        self.incompatibility: str | None = "; ".join(p for p in problems if p) or None
        self.problem = None if self.incompatibility or dynamics is None else MpcProblem(dynamics, spec, self.settings)
        self.sqp = (CondensedSqp(dynamics, spec, self.settings)
                    if self.problem is not None and dynamics is not None and self.settings.subproblem == "condensed-qp"
                    else None)
        self._warm: _WarmStart | None = None
        self._warm_plan: np.ndarray | None = None  # the previous proposal's plan (n_mv, N), condensed-QP path

    @classmethod
    def from_export(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], spec: MpcSpec,
                    settings: MpcSettings | None = None) -> MpcController:
        """Build from a twin export; a bad or mismatched export gives a controller whose solves say 'incompatible'."""
        try:
            dynamics = TwinDynamics.from_export(meta, arrays)
        except ExportError as exc:
            return cls(None, spec, settings, export_error=str(exc))
        return cls(dynamics, spec, settings)

    def reset(self) -> None:
        """Forget the previous solution, so the next solve starts cold from holding the current setpoints."""
        self._warm, self._warm_plan = None, None

    def solve(self, *, z0: np.ndarray, mv: Mapping[str, float],
              dv_forecast: Mapping[str, float | Sequence[float]] | None = None,
              spec: MpcSpec | None = None, cv_bias: Mapping[str, float] | None = None) -> MpcResult:
        """Plan setpoints from latents z0 (M, nz), current setpoints by MV name and a DV forecast by DV name.

        A DV forecast is one value (held over the horizon) or one value per step. `spec` may update limits,
        prices and targets without a rebuild, as long as its tags, terms and targets are the same.
        `cv_bias` (offset-free MPC): a constant output disturbance per CV name, in engineering units, added to every
        member's predicted CVs over the whole horizon (soft and safety limits, targets, economics, the reported
        predictions); usually measured CV minus the twin's readout of z0 now, filtered. CVs not named get 0; an
        unknown name or a NaN/inf value gives `bad_input`. None (the default) adds nothing.
        """
        n = self.settings.horizon
        period = self.dynamics.sample_period_s if self.dynamics else 0.0
        spec = spec or self.spec
        if self.problem is None or self.dynamics is None:
            return MpcResult(MpcStatus.INCOMPATIBLE, f"twin is incompatible with the line: {self.incompatibility}", n, period)
        if spec.structure != self.spec.structure:
            return MpcResult(MpcStatus.INCOMPATIBLE, "spec tags, objective terms or targets differ from the ones the "
                             "problem was built for; build a new controller", n, period)
        incompatible = check_compatible(self.dynamics, spec, self.settings)
        if incompatible:
            return MpcResult(MpcStatus.INCOMPATIBLE, "; ".join(incompatible), n, period)
        inputs = read_inputs(self.dynamics, n, z0, mv, dv_forecast or {})
        if isinstance(inputs, str):
            return MpcResult(MpcStatus.BAD_INPUT, inputs, n, period)
        z_now, u_now, d_plan = inputs
        bias = _read_bias(self.dynamics, cv_bias)
        if isinstance(bias, str):
            return MpcResult(MpcStatus.BAD_INPUT, bias, n, period)
        bounds = self._bounds(spec, u_now)
        if isinstance(bounds, str):
            return MpcResult(MpcStatus.INCOMPATIBLE, bounds, n, period)
        p = self._parameters(spec, z_now, u_now, d_plan)
        with blas_threads(self.settings.blas_threads):
            if self.sqp is not None:
                return self._condensed(spec, z_now, u_now, d_plan, p, bounds, bias)
            return self._sqp(spec, z_now, u_now, d_plan, p, bounds, bias)

    def _condensed(self, spec: MpcSpec, z_now: np.ndarray, u_now: np.ndarray, d_plan: np.ndarray, p: np.ndarray,
                   bounds: _Bounds, bias: np.ndarray | None = None) -> MpcResult:
        """Solve by sequential dense QPs on the twin condensed onto the MV plan (optimizer.sqp)."""
        pr, dyn, sqp, settings = self.problem, self.dynamics, self.sqp, self.settings
        assert pr is not None and dyn is not None and sqp is not None
        n, period = settings.horizon, dyn.sample_period_s
        u_lo, u_hi = pr.x["U"].take(bounds.lbx), pr.x["U"].take(bounds.ubx)
        hold_plan = np.repeat(u_now[:, None], n, axis=1)
        start = hold_plan if self._warm_plan is None else _shift(self._warm_plan)
        u_start = project(start, u_now, u_lo, u_hi, bounds.max_move)
        weights = Weights(*(pr.p[name].take(p).reshape(-1) for name in ("price", "target", "target_weight",
                                                                          "soft_weight")))
        limits = CvLimits(*(pr.g[name].take(b)[:, 0] for name, b in (
            ("cv_low", bounds.lbg), ("cv_high", bounds.ubg), ("safety_low", bounds.lbg), ("safety_high", bounds.ubg))))
        out = sqp.solve(z_now=z_now, u_now=u_now, d=d_plan, u_start=u_start,
                        mv=MvBounds(u_lo, u_hi, bounds.max_move), weights=weights, limits=limits, cv_bias=bias)
        if out.status is MpcStatus.OPTIMAL and out.elapsed_s > settings.max_solver_time_s:
            out = dataclasses.replace(out, status=MpcStatus.TIMEOUT)
        if out.status is not MpcStatus.OPTIMAL:
            return self._failure(spec, z_now, out.status, out.raw, out.elapsed_s, out.iterations, bias)
        ref = out.ref
        spread = dyn.cv_std[:, None] * np.sqrt(ref.var_n)
        value = np.mean(sqp.costs.value(ref.mean, ref.u, d_plan, weights.price))
        violation = self._hard_violation(ref.u, u_now, ref.mean, spread, bounds)
        elapsed = out.elapsed_s
        if violation:
            self._warm, self._warm_plan = None, None
            return MpcResult(MpcStatus.SOLVER_FAILED, f"the QP solver returned {out.raw} but {violation}; no "
                             "proposal", n, period, solve_time_s=elapsed, iterations=out.iterations)
        hold = sqp.evaluate(hold_plan, z_now, d_plan, u_now, weights, limits, linearise=False, cv_bias=bias)
        hold_value = np.mean(sqp.costs.value(hold.mean, hold_plan, d_plan, weights.price))
        self._warm_plan = ref.u
        return self._result(ref.u, (ref.mean, spread, np.asarray(value)), (hold.mean, np.asarray(hold_value)), u_now,
                            d_plan, bounds, f"QP {settings.qp_solver}: {out.raw}", elapsed, out.iterations,
                            out.linearisations)

    def _sqp(self, spec: MpcSpec, z_now: np.ndarray, u_now: np.ndarray, d_plan: np.ndarray, p: np.ndarray,
             bounds: _Bounds, bias: np.ndarray | None = None) -> MpcResult:
        """Solve by sequential linearisation: IPOPT on the twin linearised along the plan, until the plan stops moving."""
        pr, dyn, settings = self.problem, self.dynamics, self.settings
        assert pr is not None and dyn is not None
        n, period = settings.horizon, dyn.sample_period_s
        u_block = pr.x["U"]
        u_lo, u_hi = u_block.take(bounds.lbx), u_block.take(bounds.ubx)
        x, lam_x, lam_g = self._initial_guess(u_now)
        u_ref = project(u_block.take(x), u_now, u_lo, u_hi, bounds.max_move)
        radius = settings.sqp_step
        started, iterations, raw = time.perf_counter(), 0, "not started"
        ref = self._linearize(x, p, z_now, u_ref, d_plan, bounds, bias)
        for linearisations in range(1, settings.sqp_iterations + 1):  # noqa: B007 (reported after the loop)
            lbx, ubx = bounds.lbx.copy(), bounds.ubx.copy()
            u_block.put(lbx, np.maximum(u_lo, u_ref - radius * dyn.mv_std[:, None]))
            u_block.put(ubx, np.minimum(u_hi, u_ref + radius * dyn.mv_std[:, None]))
            try:
                sol = pr.solver(x0=ref.x, lam_x0=lam_x, lam_g0=lam_g, p=ref.p, lbx=lbx, ubx=ubx, lbg=bounds.lbg,
                                ubg=bounds.ubg)
                stats = pr.solver.stats()
            except RuntimeError as exc:  # an evaluation error inside IPOPT's callbacks
                sol, stats = None, {"return_status": f"CasADi error: {exc}"}
            iterations += int(stats.get("iter_count", 0))
            raw = str(stats.get("return_status", "unknown"))
            status = _STATUS.get(raw, MpcStatus.SOLVER_FAILED)
            if time.perf_counter() - started > settings.max_solver_time_s:
                status = MpcStatus.TIMEOUT
            if status in (MpcStatus.INFEASIBLE, MpcStatus.SOLVER_FAILED) and ref.safe and radius > settings.sqp_tolerance:
                # The reference plan is feasible, so IPOPT lost its way (e.g. from stale multipliers): retry smaller.
                radius, lam_x, lam_g = radius * 0.25, np.zeros_like(lam_x), np.zeros_like(lam_g)
                continue
            if status is not MpcStatus.OPTIMAL or sol is None:
                return self._failure(spec, z_now, status, raw, time.perf_counter() - started, iterations, bias)
            x_new = np.asarray(sol["x"]).reshape(-1)
            u_new = project(u_block.take(x_new), u_now, u_lo, u_hi, bounds.max_move)
            step = float(np.max(np.abs(u_new - u_ref) / dyn.mv_std[:, None]))
            if step <= settings.sqp_tolerance:
                break
            predicted = ref.cost - float(sol["f"])
            if predicted <= settings.sqp_cost_tolerance * (1 + abs(ref.cost)):
                break  # first-order optimal: the linearised twin sees no worthwhile decrease from the reference
            # Trust region: keep the step if the exact twin confirms enough of the decrease the linearisation promised.
            trial = self._linearize(x_new, ref.p, z_now, u_new, d_plan, bounds, bias)
            actual = ref.cost - trial.cost
            if trial.safe and actual >= 0.1 * predicted:
                ref, u_ref = trial, u_new
                lam_x, lam_g = (np.asarray(sol[k]).reshape(-1) for k in ("lam_x", "lam_g"))
                if actual >= 0.75 * predicted and step >= 0.9 * radius:
                    radius = min(2 * radius, 10 * settings.sqp_step)
            else:
                radius *= 0.25
                if radius < settings.sqp_tolerance:
                    return self._failure(spec, z_now, MpcStatus.SOLVER_FAILED, f"{raw}, but no step improves the "
                                         "exact twin's cost", time.perf_counter() - started, iterations, bias)
        else:
            return self._failure(spec, z_now, MpcStatus.TIMEOUT, f"{raw}, plan still moving after "
                                 f"{settings.sqp_iterations} linearisations", time.perf_counter() - started, iterations,
                                 bias)
        x, p = ref.x, ref.p
        elapsed = time.perf_counter() - started
        if elapsed > settings.max_solver_time_s:
            return self._failure(spec, z_now, MpcStatus.TIMEOUT, raw, elapsed, iterations, bias)
        y, spread, value = (np.asarray(v) for v in pr.evaluate(z_now, u_ref, d_plan, pr.p["price"].take(p)))
        y, value = self._biased(y, value, u_ref, d_plan, p, bias)
        violation = self._hard_violation(u_ref, u_now, y, spread, bounds)
        if violation:
            self._warm = None
            return MpcResult(MpcStatus.SOLVER_FAILED, f"IPOPT returned {raw} but {violation}; no proposal", n,
                             period, solve_time_s=elapsed, iterations=iterations)
        self._warm = _WarmStart(x, lam_x, lam_g)
        y_hold, _, value_hold = (np.asarray(v) for v in pr.evaluate(z_now, np.repeat(u_now[:, None], n, 1), d_plan,
                                                                    pr.p["price"].take(p)))
        y_hold, value_hold = self._biased(y_hold, value_hold, np.repeat(u_now[:, None], n, 1), d_plan, p, bias)
        return self._result(pr.x["U"].take(x), (y, spread, value), (y_hold, value_hold), u_now, d_plan, bounds,
                            f"IPOPT: {raw}", elapsed, iterations, linearisations)

    def _biased(self, y: np.ndarray, value: np.ndarray, u: np.ndarray, d_plan: np.ndarray, p: np.ndarray,
                bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Return the exact twin's mean CVs (n_cv, N) and value shifted by the CV bias (unchanged without one)."""
        pr = self.problem
        assert pr is not None
        if bias is None:
            return y, value
        y = y + bias[:, None]
        price = pr.p["price"].take(p).reshape(-1)
        value = np.asarray(np.sum(economic_value(self.dynamics, pr.spec, y, u, d_plan, price)) / y.shape[1])
        return y, value

    def _failure(self, spec: MpcSpec, z_now: np.ndarray, status: MpcStatus, raw: str, elapsed: float,
                 iterations: int, bias: np.ndarray | None = None) -> MpcResult:
        """Return a result without proposal that says why, and drop the warm start."""
        self._warm, self._warm_plan = None, None
        settings = self.settings
        why = {MpcStatus.TIMEOUT: f"solver budget exhausted ({settings.max_solver_time_s} s, "
                                  f"{settings.max_iterations} IPOPT iterations, {settings.sqp_iterations} linearisations)",
               MpcStatus.INFEASIBLE: "the hard limits (MV, move, safety) cannot all be met"}.get(status, "solver failed")
        note = self._safety_note(spec, z_now, bias)
        if note and status is MpcStatus.SOLVER_FAILED:
            status, why = MpcStatus.INFEASIBLE, "the hard limits (MV, move, safety) cannot all be met"
        solver = "IPOPT" if self.sqp is None else f"the QP solver ({settings.qp_solver})"
        message = f"{why}: {solver} returned {raw}; no proposal" + note
        period = self.dynamics.sample_period_s if self.dynamics else 0.0
        return MpcResult(status, message, settings.horizon, period, solve_time_s=elapsed, iterations=iterations)

    # ---------------------------------------------------------------- bounds and parameters

    def _bounds(self, spec: MpcSpec, u_now: np.ndarray) -> _Bounds | str:
        """Return variable and constraint bounds for this solve, or why the MV limits cannot be met by the twin."""
        dyn, pr, n = self.dynamics, self.problem, self.settings.horizon
        assert dyn is not None and pr is not None
        mvs = {m.name: m for m in spec.mvs}
        width = dyn.train_mv_max - dyn.train_mv_min
        trust_lo = dyn.train_mv_min - self.settings.trust_region_margin * width
        trust_hi = dyn.train_mv_max + self.settings.trust_region_margin * width
        lo, hi, dmax = np.empty(len(dyn.mv)), np.empty(len(dyn.mv)), np.empty(len(dyn.mv))
        for i, name in enumerate(dyn.mv):
            m = mvs[name]
            lo[i] = max(_num(m.limits.low, -np.inf), trust_lo[i])
            hi[i] = min(_num(m.limits.high, np.inf), trust_hi[i])
            if lo[i] > hi[i]:
                return (f"MV {name}: limits [{m.limits.low}, {m.limits.high}] do not overlap the twin's trusted range "
                        f"[{trust_lo[i]:g}, {trust_hi[i]:g}]")
            ramp = _num(m.ramp_rate_per_min, np.inf) * dyn.sample_period_s / 60.0
            dmax[i] = min(_num(m.max_move_per_step, np.inf), ramp)
        # A setpoint already outside its range may come back no faster than its move limit allows.
        reach = np.outer(dmax, np.arange(1, n + 1))  # (n_mv, N)
        u_lo = np.minimum(lo[:, None], u_now[:, None] + reach)
        u_hi = np.maximum(hi[:, None], u_now[:, None] - reach)
        lbx, ubx = np.full(pr.x.size, -np.inf), np.full(pr.x.size, np.inf)
        pr.x["U"].put(lbx, u_lo)
        pr.x["U"].put(ubx, u_hi)
        pr.x["S"].put(lbx, 0.0)
        lbg, ubg = np.full(pr.g.size, -np.inf), np.full(pr.g.size, np.inf)
        for name in ("dynamics", "readout"):
            pr.g[name].put(lbg, 0.0)
            pr.g[name].put(ubg, 0.0)
        pr.g["max_move"].put(lbg, -dmax[:, None])
        pr.g["max_move"].put(ubg, dmax[:, None])
        cvs = {c.name: c for c in spec.cvs}
        for name, block, limits, side in (("cv_low", lbg, "limits", "low"), ("cv_high", ubg, "limits", "high"),
                                          ("safety_low", lbg, "safety", "low"), ("safety_high", ubg, "safety", "high")):
            default = -np.inf if side == "low" else np.inf
            values = [_num(getattr(getattr(cvs[c], limits), side), default) for c in dyn.cv]
            pr.g[name].put(block, np.asarray(values)[:, None])
        trust = (lo > _lows(mvs, dyn.mv), hi < _highs(mvs, dyn.mv))
        return _Bounds(lbx, ubx, lbg, ubg, trust, dmax)

    def _parameters(self, spec: MpcSpec, z_now: np.ndarray, u_now: np.ndarray, d_plan: np.ndarray) -> np.ndarray:
        pr, dyn = self.problem, self.dynamics
        assert pr is not None and dyn is not None
        p = pr.p.zeros()
        pr.p["z0"].put(p, z_now[:, None])
        pr.p["u_now"].put(p, u_now[:, None])
        pr.p["D"].put(p, d_plan)
        pr.p["price"].put(p, np.array([[t.price for t in spec.objective_terms]]).T)
        pr.p["target"].put(p, np.array([[t.value for t in spec.targets]]).T)
        pr.p["target_weight"].put(p, np.array([[t.weight for t in spec.targets]]).T)
        ranks = {c.name: c.rank for c in spec.cvs}
        weights = [self.settings.soft_penalty_by_rank[ranks[c] - 1] for c in dyn.cv]
        pr.p["soft_weight"].put(p, np.array([weights]).T)
        return p

    def _initial_guess(self, u_now: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return x0 and multipliers: the previous solution shifted one step, or holding the current setpoints."""
        pr = self.problem
        assert pr is not None
        x0, lam_x0, lam_g0 = pr.x.zeros(), pr.x.zeros(), pr.g.zeros()
        if self._warm is None:
            pr.x["U"].put(x0, np.repeat(u_now[:, None], self.settings.horizon, axis=1))
            return x0, lam_x0, lam_g0
        for stack, src, dst in ((pr.x, self._warm.x, x0), (pr.x, self._warm.lam_x, lam_x0),
                                (pr.g, self._warm.lam_g, lam_g0)):
            for block in stack.blocks.values():
                block.put(dst, _shift(block.take(src)))
        return x0, lam_x0, lam_g0

    def _linearize(self, x: np.ndarray, p: np.ndarray, z_now: np.ndarray, u: np.ndarray, d_plan: np.ndarray,
                   bounds: _Bounds, bias: np.ndarray | None = None) -> _Reference:
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
        pr.x["S"].put(x, self._slack(mean, bounds))
        spread = np.sqrt(members.var(axis=0, ddof=1) + VAR_EPS * dyn.cv_std[:, None] ** 2) if dyn.members > 1 else 0 * mean
        k, tol = self.settings.safety_spread_k, 1e-6 * dyn.cv_std[:, None]
        safe = bool(np.all(mean - k * spread >= pr.g["safety_low"].take(bounds.lbg) - tol)
                    and np.all(mean + k * spread <= pr.g["safety_high"].take(bounds.ubg) + tol))
        return _Reference(x, p, float(pr.cost(x, p)), safe)

    def _slack(self, y: np.ndarray, bounds: _Bounds) -> np.ndarray:
        """Return the soft-limit slack (n_cv, N), in CV stds, that predicted CVs y need."""
        pr, dyn = self.problem, self.dynamics
        assert pr is not None and dyn is not None
        over = np.maximum(pr.g["cv_low"].take(bounds.lbg) - y, y - pr.g["cv_high"].take(bounds.ubg))
        return np.maximum(over / dyn.cv_std[:, None], 0.0)

    # ---------------------------------------------------------------- after the solve

    def _hard_violation(self, u: np.ndarray, u_now: np.ndarray, y: np.ndarray, spread: np.ndarray,
                        bounds: _Bounds) -> str:
        """Return what hard limit the plan breaks when re-simulated (empty if none): never pass on a half result."""
        pr, dyn = self.problem, self.dynamics
        assert pr is not None and dyn is not None
        tol = 1e-6
        if np.any(u < pr.x["U"].take(bounds.lbx) - tol * (1 + np.abs(u))) or np.any(
            u > pr.x["U"].take(bounds.ubx) + tol * (1 + np.abs(u))
        ):
            return "the plan leaves the MV limits"
        moves = np.abs(np.diff(np.hstack([u_now[:, None], u]), axis=1))
        if np.any(moves > bounds.max_move[:, None] * (1 + tol) + tol):
            return "the plan breaks a move limit"
        k, scale = self.settings.safety_spread_k, 1e-5 * dyn.cv_std[:, None]
        if np.any(np.asarray(y - k * spread) < pr.g["safety_low"].take(bounds.lbg) - scale) or np.any(
            np.asarray(y + k * spread) > pr.g["safety_high"].take(bounds.ubg) + scale
        ):
            return "the simulated plan crosses a CV safety limit"
        return ""

    def _safety_note(self, spec: MpcSpec, z_now: np.ndarray, bias: np.ndarray | None = None) -> str:
        """Return a note naming CVs whose current prediction is already beyond a safety limit."""
        dyn, pr = self.dynamics, self.problem
        assert dyn is not None and pr is not None
        y = np.asarray(pr.current(z_now)).reshape(-1)  # (n_cv,) ensemble mean now
        if bias is not None:
            y = y + bias
        beyond = []
        for c in spec.cvs:
            v = y[dyn.cv.index(c.name)]
            if c.safety.low is not None and v < c.safety.low:
                beyond.append(f"{c.name}={v:.4g} is below its safety low limit {c.safety.low:g}")
            if c.safety.high is not None and v > c.safety.high:
                beyond.append(f"{c.name}={v:.4g} is above its safety high limit {c.safety.high:g}")
        return ("; the twin puts the line beyond a hard safety limit now (" + ", ".join(beyond)
                + ") and no plan within the MV and move limits brings it back by the first step") if beyond else ""

    def _result(self, u: np.ndarray, predicted: tuple[np.ndarray, np.ndarray, np.ndarray],
                hold: tuple[np.ndarray, np.ndarray], u_now: np.ndarray, d_plan: np.ndarray, bounds: _Bounds, raw: str,
                elapsed: float, iterations: int, linearisations: int) -> MpcResult:
        """Assemble the proposal of plan u (n_mv, N): predictions with bands, gain versus hold, active constraints."""
        pr, dyn, settings = self.problem, self.dynamics, self.settings
        assert pr is not None and dyn is not None
        n = settings.horizon
        y, spread, value = predicted  # (n_cv, N) mean, (n_cv, N) spread, scalar value per hour
        y_hold, value_hold = hold  # the same when holding the current setpoints
        lo, hi = y - settings.band_k * spread, y + settings.band_k * spread
        active = _active(dyn, pr.g, u, u_now, y, spread, bounds, pr.x["U"], settings)
        slack = self._slack(y, bounds) * dyn.cv_std[:, None]
        soft = [f"{c} by up to {slack[i].max():.4g}" for i, c in enumerate(dyn.cv) if slack[i].max() > 1e-6 * (1 + dyn.cv_std[i])]
        message = f"optimal ({raw}, {linearisations} linearisations)"
        if soft:
            message += "; planned CVs outside their soft operating limits: " + ", ".join(soft)
        d_out = [name for i, name in enumerate(dyn.dv)
                 if np.any(d_plan[i] < dyn.train_dv_min[i]) or np.any(d_plan[i] > dyn.train_dv_max[i])]
        if d_out:
            message += "; DV forecast outside the twin's training range: " + ", ".join(d_out)

        def traj(matrix: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
            return {name: tuple(float(v) for v in matrix[i]) for i, name in enumerate(names)}

        return MpcResult(
            MpcStatus.OPTIMAL, message, n, dyn.sample_period_s,
            first_setpoint={name: float(u[i, 0]) for i, name in enumerate(dyn.mv)},
            first_move={name: float(u[i, 0] - u_now[i]) for i, name in enumerate(dyn.mv)},
            mv_plan=traj(u, dyn.mv), cv_mean=traj(y, dyn.cv), cv_lo=traj(lo, dyn.cv), cv_hi=traj(hi, dyn.cv),
            cv_hold_mean=traj(y_hold, dyn.cv),
            objective_plan=float(value.item()), objective_hold=float(value_hold.item()),
            objective_gain=float(value.item() - value_hold.item()),
            active_constraints=active, solve_time_s=elapsed, iterations=iterations,
        )


def _active(dyn: Dynamics, g: Any, u: np.ndarray, u_now: np.ndarray, y: np.ndarray,
            spread: np.ndarray, bounds: _Bounds, u_block: Any, settings: MpcSettings) -> tuple[str, ...]:
    """Return the names of the constraints at (or, for soft CV limits, beyond) their bound somewhere in the plan."""
    tol = settings.active_tolerance
    names: list[str] = []

    def near(value: np.ndarray, bound: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
        return np.isfinite(bound) & (np.abs(value - bound) <= tol * (scale + np.abs(bound)))

    lbx, ubx = u_block.take(bounds.lbx), u_block.take(bounds.ubx)
    moves = np.diff(np.hstack([u_now[:, None], u]), axis=1)
    for i, name in enumerate(dyn.mv):
        if near(u[i], lbx[i], dyn.mv_std[i]).any():
            names.append(f"{name}:{'trust_low' if bounds.mv_trust[0][i] else 'mv_low'}")
        if near(u[i], ubx[i], dyn.mv_std[i]).any():
            names.append(f"{name}:{'trust_high' if bounds.mv_trust[1][i] else 'mv_high'}")
        if np.isfinite(bounds.max_move[i]) and near(np.abs(moves[i]), bounds.max_move[i], dyn.mv_std[i]).any():
            names.append(f"{name}:max_move")
    k = settings.safety_spread_k
    for i, name in enumerate(dyn.cv):
        low, high = g["cv_low"].take(bounds.lbg)[i], g["cv_high"].take(bounds.ubg)[i]
        if (near(y[i], low, dyn.cv_std[i]) | (y[i] < low)).any():
            names.append(f"{name}:cv_low")
        if (near(y[i], high, dyn.cv_std[i]) | (y[i] > high)).any():
            names.append(f"{name}:cv_high")
        if near(y[i] - k * spread[i], g["safety_low"].take(bounds.lbg)[i], dyn.cv_std[i]).any():
            names.append(f"{name}:safety_low")
        if near(y[i] + k * spread[i], g["safety_high"].take(bounds.ubg)[i], dyn.cv_std[i]).any():
            names.append(f"{name}:safety_high")
    return tuple(names)


def _read_bias(dyn: Dynamics, cv_bias: Mapping[str, float] | None) -> np.ndarray | None | str:
    """Return the CV bias (n_cv,) in the twin's CV order (0 where not named), None if none, or why it is unusable."""
    if cv_bias is None:
        return None
    unknown = sorted(set(cv_bias) - set(dyn.cv))
    if unknown:
        return f"CV bias names tags that are not CVs of the twin: {unknown}"
    try:
        bias = np.array([float(cv_bias.get(name, 0.0)) for name in dyn.cv])
    except (TypeError, ValueError):
        return "CV bias values must be numbers"
    if not np.all(np.isfinite(bias)):
        bad = [name for name, v in zip(dyn.cv, bias, strict=True) if not np.isfinite(v)]
        return f"CV bias holds NaN or inf: {bad}"
    return bias


def _shift(matrix: np.ndarray) -> np.ndarray:
    """Drop the first column (the step now past) and repeat the last: the previous plan, one step on."""
    return np.hstack([matrix[:, 1:], matrix[:, -1:]]) if matrix.shape[1] else matrix


def _num(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _lows(mvs: Mapping[str, Any], names: tuple[str, ...]) -> np.ndarray:
    return np.array([_num(mvs[n].limits.low, -np.inf) for n in names])


def _highs(mvs: Mapping[str, Any], names: tuple[str, ...]) -> np.ndarray:
    return np.array([_num(mvs[n].limits.high, np.inf) for n in names])
