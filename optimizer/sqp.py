"""Sequential QP on the condensed twin: linearise along the plan in numpy, solve a dense QP, accept on the exact twin."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optimizer.condensed import CostModel, CvLimits, DenseQp, Evaluation, Weights
from optimizer.dynamics import TwinDynamics
from optimizer.linearize import NumpyTwin
from optimizer.model import CasadiPlan, Dynamics
from optimizer.result import MpcStatus
from optimizer.spec import MpcSettings, MpcSpec

SAFETY_CORRECTIONS = 3  # second-order corrections of the linearised safety limits per reference before shrinking


@dataclass(frozen=True)
class MvBounds:
    """MV limits of one solve: per-step setpoint bounds and the per-step move limit."""

    low: np.ndarray  # (n_mv, N) engineering units (MV limits within the trusted training range)
    high: np.ndarray  # (n_mv, N)
    max_move: np.ndarray  # (n_mv,) inf where none


@dataclass(frozen=True)
class SqpOutcome:
    """How the SQP ended: a status, the last accepted plan on the exact twin and the effort spent."""

    status: MpcStatus
    raw: str  # the QP solver's last status, or why the loop stopped
    ref: Evaluation  # the last accepted plan (the proposal when status is OPTIMAL)
    iterations: int  # QPs solved (working-set rounds over all linearisations)
    linearisations: int
    elapsed_s: float


class CondensedSqp:
    """The MPC of one (line, twin version) solved as a sequence of dense convex QPs in the MV plan."""

    def __init__(self, dyn: Dynamics, spec: MpcSpec, settings: MpcSettings) -> None:
        self.dyn, self.settings = dyn, settings
        self.twin = NumpyTwin(dyn) if isinstance(dyn, TwinDynamics) else CasadiPlan(dyn, settings.horizon)
        self.costs = CostModel(dyn, spec, settings)
        self.qp = DenseQp(settings.qp_solver, _qp_options(settings))

    def evaluate(self, u: np.ndarray, z_now: np.ndarray, d: np.ndarray, u_now: np.ndarray, weights: Weights,
                 limits: CvLimits, linearise: bool = True, cv_bias: np.ndarray | None = None) -> Evaluation:
        """Return plan u (n_mv, N) on the exact twin, with its sensitivities when linearise is set.

        cv_bias (n_cv,), if given, is added to every member's CVs at every step (a constant output disturbance):
        it shifts the means, not the spread or the sensitivities.
        """
        if linearise:
            lin = self.twin.linearise(z_now, u, d)
            y = lin.y if cv_bias is None else lin.y + cv_bias
            return self.costs.evaluate(u, y, d, u_now, weights, limits, lin)
        y = self.twin.rollout(z_now, u, d)
        y = y if cv_bias is None else y + cv_bias
        return self.costs.evaluate(u, y, d, u_now, weights, limits)

    def solve(self, *, z_now: np.ndarray, u_now: np.ndarray, d: np.ndarray, u_start: np.ndarray, mv: MvBounds,
              weights: Weights, limits: CvLimits, cv_bias: np.ndarray | None = None) -> SqpOutcome:
        """Run the SQP from plan u_start (already within the MV and move limits) until the plan stops moving."""
        settings, dyn = self.settings, self.dyn
        n, n_mv, nu = settings.horizon, len(dyn.mv), settings.horizon * len(dyn.mv)
        started = time.perf_counter()
        ref = self.evaluate(u_start, z_now, d, u_now, weights, limits, cv_bias=cv_bias)
        radius, iterations, raw = settings.sqp_step, 0, "not started"
        backoff = np.zeros((2, len(dyn.cv), n))  # tightening of the linearised safety low/high rows
        corrections = 0
        model = self._model(ref, d, u_now, weights, limits, mv.max_move)
        mv_std = dyn.mv_std[:, None]
        for linearisations in range(1, settings.sqp_iterations + 1):  # noqa: B007 (reported after the loop)
            h, g, c0, a, lba, uba, soft, safety_rows = model
            rows_lo, rows_hi = _shift_rows(lba, uba, safety_rows, backoff)
            low = np.maximum(mv.low, ref.u - radius * mv_std) - ref.u
            high = np.minimum(mv.high, ref.u + radius * mv_std) - ref.u
            lbx = np.concatenate([low.T.reshape(-1), np.zeros(len(soft) * n)])
            ubx = np.concatenate([high.T.reshape(-1), np.full(len(soft) * n, np.inf)])
            x, objective, raw, its = self.qp.solve(h, g, a, rows_lo, rows_hi, lbx, ubx, optional=len(soft) * n)
            iterations += its
            elapsed = time.perf_counter() - started
            if elapsed > settings.max_solver_time_s:
                return SqpOutcome(MpcStatus.TIMEOUT, raw, ref, iterations, linearisations, elapsed)
            if x is None:
                if ref.safe and radius > settings.sqp_tolerance:
                    radius *= 0.25  # the reference is feasible, so a smaller step is too: retry
                    backoff[:] = 0.0
                    continue
                status = MpcStatus.INFEASIBLE if not ref.safe else MpcStatus.SOLVER_FAILED
                return SqpOutcome(status, raw, ref, iterations, linearisations, elapsed)
            du = x[:nu].reshape(n, n_mv).T
            u_new = project(ref.u + du, u_now, mv.low, mv.high, mv.max_move)
            step = float(np.max(np.abs(u_new - ref.u) / mv_std))
            if step <= settings.sqp_tolerance:
                break
            predicted = ref.cost - (c0 + objective)
            if predicted <= settings.sqp_cost_tolerance * (1 + abs(ref.cost)):
                break  # first-order optimal: the QP model sees no worthwhile decrease from the reference
            trial = self.evaluate(u_new, z_now, d, u_now, weights, limits, cv_bias=cv_bias)
            if not trial.safe and corrections < SAFETY_CORRECTIONS and safety_rows[0].size + safety_rows[1].size:
                # Second-order correction: tighten each linearised safety row by the curvature error at the trial.
                backoff = np.maximum(backoff + self._safety_error(ref, trial, u_new - ref.u, safety_rows), 0.0)
                backoff = np.minimum(backoff, self._margins(ref, limits))  # holding the reference stays feasible
                corrections += 1
                continue
            actual = ref.cost - trial.cost
            if trial.safe and actual >= 0.1 * predicted:
                ref, corrections = trial, 0
                model = self._model(ref, d, u_now, weights, limits, mv.max_move)
                if actual >= 0.75 * predicted and step >= 0.9 * radius:
                    radius = min(2 * radius, 10 * settings.sqp_step)
            else:
                radius *= 0.25
                if radius < settings.sqp_tolerance:
                    return SqpOutcome(MpcStatus.SOLVER_FAILED, f"{raw}, but no step improves the exact twin's cost",
                                      ref, iterations, linearisations, time.perf_counter() - started)
        else:
            return SqpOutcome(MpcStatus.TIMEOUT, f"{raw}, plan still moving after {settings.sqp_iterations} "
                              "linearisations", ref, iterations, settings.sqp_iterations, time.perf_counter() - started)
        status = MpcStatus.OPTIMAL if ref.safe else MpcStatus.INFEASIBLE
        return SqpOutcome(status, raw, ref, iterations, linearisations, time.perf_counter() - started)

    # ---------------------------------------------------------------- the QP of one reference

    def _model(self, ref: Evaluation, d: np.ndarray, u_now: np.ndarray, weights: Weights, limits: CvLimits,
               max_move: np.ndarray) -> tuple:  # type: ignore[type-arg]
        """Return the QP at ref: H, g, constant, rows A with bounds, soft CV indices, safety row data."""
        dyn, settings, costs = self.dyn, self.settings, self.costs
        n, nu = settings.horizon, settings.horizon * len(dyn.mv)
        h_u, g_u, c0 = costs.quadratic(ref, d, u_now, weights)
        soft = np.flatnonzero(np.isfinite(limits.low) | np.isfinite(limits.high))
        ns = len(soft) * n
        sw = np.repeat(weights.soft_weight[soft], n) / n  # slack S ordered (soft CV, step)
        h = np.zeros((nu + ns, nu + ns))
        h[:nu, :nu] = h_u
        h[nu:, nu:] = np.diag(2 * sw)
        g = np.concatenate([g_u, sw])
        g_mean, g_spread = costs.safety_rows(ref)  # (n_cv, N, nu)
        blocks, lows, highs = [], [], []
        # move limits: Delta vec(U) within +/- max_move, relative to the reference's moves
        ref_moves = np.diff(np.hstack([u_now[:, None], ref.u]), axis=1)  # (n_mv, N)
        for i in np.flatnonzero(np.isfinite(max_move)):
            rows = costs.delta[i::len(dyn.mv)]  # (N, nu): U[i,k] - U[i,k-1]
            blocks.append(np.hstack([rows, np.zeros((n, ns))]))
            lows.append(-max_move[i] - ref_moves[i])
            highs.append(max_move[i] - ref_moves[i])
        for j, c in enumerate(soft):
            e = np.zeros((n, ns))
            e[np.arange(n), j * n + np.arange(n)] = dyn.cv_std[c]
            if np.isfinite(limits.low[c]):
                blocks.append(np.hstack([g_mean[c], e]))
                lows.append(limits.low[c] - ref.mean[c])
                highs.append(np.full(n, np.inf))
            if np.isfinite(limits.high[c]):
                blocks.append(np.hstack([g_mean[c], -e]))
                lows.append(np.full(n, -np.inf))
                highs.append(limits.high[c] - ref.mean[c])
        k = settings.safety_spread_k
        safe_lo = np.flatnonzero(np.isfinite(limits.safety_low))
        safe_hi = np.flatnonzero(np.isfinite(limits.safety_high))
        first = sum(len(b) for b in blocks)
        for c in safe_lo:
            blocks.append(np.hstack([g_mean[c] - k * g_spread[c], np.zeros((n, ns))]))
            lows.append(limits.safety_low[c] - (ref.mean[c] - k * ref.spread[c]))
            highs.append(np.full(n, np.inf))
        for c in safe_hi:
            blocks.append(np.hstack([g_mean[c] + k * g_spread[c], np.zeros((n, ns))]))
            lows.append(np.full(n, -np.inf))
            highs.append(limits.safety_high[c] - (ref.mean[c] + k * ref.spread[c]))
        a = np.vstack(blocks) if blocks else np.zeros((0, nu + ns))
        lba = np.concatenate(lows) if lows else np.zeros(0)
        uba = np.concatenate(highs) if highs else np.zeros(0)
        return h, g, c0, a, lba, uba, soft, (safe_lo, safe_hi, first)

    def _margins(self, ref: Evaluation, limits: CvLimits) -> np.ndarray:
        """Return (2, n_cv, N): how far ref's mean -/+ k spread is inside the safety low/high limits (>= 0)."""
        k = self.settings.safety_spread_k
        low = ref.mean - k * ref.spread - limits.safety_low[:, None]
        high = limits.safety_high[:, None] - (ref.mean + k * ref.spread)
        return np.maximum(np.stack([low, high]) * (1 - 1e-6), 0.0)

    def _safety_error(self, ref: Evaluation, trial: Evaluation, du: np.ndarray, rows: tuple) -> np.ndarray:  # type: ignore[type-arg]
        """Return (2, n_cv, N): how far the exact twin's mean -/+ k spread at the trial is beyond its linearisation."""
        safe_lo, safe_hi, _ = rows
        g_mean, g_spread = self.costs.safety_rows(ref)
        k, dvec = self.settings.safety_spread_k, du.T.reshape(-1)
        err = np.zeros((2, len(self.dyn.cv), self.settings.horizon))
        for c in safe_lo:  # rows are >= limits: the error is how much lower the exact value is
            lin = ref.mean[c] - k * ref.spread[c] + (g_mean[c] - k * g_spread[c]) @ dvec
            err[0, c] = lin - (trial.mean[c] - k * trial.spread[c])
        for c in safe_hi:
            lin = ref.mean[c] + k * ref.spread[c] + (g_mean[c] + k * g_spread[c]) @ dvec
            err[1, c] = (trial.mean[c] + k * trial.spread[c]) - lin
        return err


def _shift_rows(lba: np.ndarray, uba: np.ndarray, rows: tuple, backoff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Return the row bounds with the safety rows tightened by the backoff (2, n_cv, N)."""
    safe_lo, safe_hi, first = rows
    lba, uba = lba.copy(), uba.copy()
    n = backoff.shape[2]
    at = first
    for c in safe_lo:
        lba[at : at + n] += backoff[0, c]
        at += n
    for c in safe_hi:
        uba[at : at + n] -= backoff[1, c]
        at += n
    return lba, uba


def project(u: np.ndarray, u_now: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_move: np.ndarray) -> np.ndarray:
    """Return plan u (n_mv, N) moved onto the MV and move limits, step by step (solvers may overstep by ~1e-8)."""
    out, previous = np.empty_like(u), u_now
    for k in range(u.shape[1]):
        # lo/hi are reachable from any admissible previous setpoint, so this interval is never empty
        low = np.maximum(lo[:, k], previous - max_move)
        out[:, k] = np.minimum(np.maximum(u[:, k], low), np.minimum(hi[:, k], previous + max_move))
        previous = out[:, k]
    return out


def _qp_options(settings: MpcSettings) -> dict[str, object]:
    defaults: dict[str, dict[str, object]] = {
        "qpoases": {"printLevel": "none", "sparse": False, "error_on_fail": False},
        "osqp": {"osqp": {"verbose": False, "eps_abs": 1e-8, "eps_rel": 1e-8, "max_iter": 20000}},
        "proxqp": {"proxqp": {"verbose": False, "backend": "dense"}},
        "daqp": {},
        "qrqp": {"print_iter": False, "print_header": False},
    }
    return {**defaults.get(settings.qp_solver, {}), **settings.qp_options}
