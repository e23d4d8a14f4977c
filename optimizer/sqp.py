"""Sequential QP on the condensed twin: linearise along the plan in numpy, solve a dense QP, accept on the exact twin."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optimizer.condensed import CostModel, Evaluation, Terminal
from optimizer.dynamics import TwinDynamics
from optimizer.limits import CvLimits, MvBounds, Weights, terminal_tail_steps
from optimizer.linearize import Linearisation, NumpyTwin
from optimizer.model import CasadiPlan, Dynamics
from optimizer.qp import DenseQp, qp_options
from optimizer.result import MpcStatus
from optimizer.spec import MpcSettings, MpcSpec
from optimizer.trust import TrustRegion

SAFETY_CORRECTIONS = 3  # second-order corrections of the linearised safety limits per reference before shrinking


@dataclass(frozen=True)
class SqpOutcome:
    """How the SQP ended: a status, the last accepted plan on the exact twin and the effort spent."""

    status: MpcStatus
    raw: str  # the QP solver's last status, or why the loop stopped
    ref: Evaluation  # the last accepted plan (the proposal when status is OPTIMAL)
    iterations: int  # QPs solved (working-set rounds over all linearisations)
    linearisations: int
    elapsed_s: float
    accepted: int = 0  # steps accepted on the exact twin: ref moved from the start plan when > 0


@dataclass(frozen=True)
class QpModel:
    """The QP of one reference plan: min 1/2 x'Hx + g'x + constant, row_low <= A x <= row_high, in x = (dU, S)."""

    hessian: np.ndarray  # (nx, nx) positive definite; nx = n_mv * N + n_soft * (N + 1 with a terminal tail)
    gradient: np.ndarray  # (nx,)
    constant: float  # the cost at the reference without the soft-limit penalty (the slacks carry it)
    rows: np.ndarray  # (n_rows, nx) A: move limits, soft CV limits, then safety limits
    row_low: np.ndarray  # (n_rows,)
    row_high: np.ndarray  # (n_rows,)
    soft: np.ndarray  # CV indices with a soft limit, one slack per (soft CV, step)
    safety_low: np.ndarray  # CV indices with a safety low limit, N rows each from first_safety_row
    safety_high: np.ndarray  # CV indices with a safety high limit, N rows each after the low ones
    first_safety_row: int

    def row_bounds(self, backoff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the row bounds with the safety rows tightened by the backoff (2, n_cv, N)."""
        low, high, n = self.row_low.copy(), self.row_high.copy(), backoff.shape[2]
        at = self.first_safety_row
        for c in self.safety_low:
            low[at : at + n] += backoff[0, c]
            at += n
        for c in self.safety_high:
            high[at : at + n] -= backoff[1, c]
            at += n
        return low, high


class CondensedSqp:
    """The MPC of one (line, twin version) solved as a sequence of dense convex QPs in the MV plan."""

    def __init__(self, dyn: Dynamics, spec: MpcSpec, settings: MpcSettings) -> None:
        self.dyn, self.settings = dyn, settings
        n, tail = settings.horizon, terminal_tail_steps(settings)  # tail: steps past the plan (terminal cost)
        # self.twin predicts the plan; tail_twin the same twin `tail` steps past it too, once per solve (Terminal)
        self.twin: NumpyTwin | CasadiPlan
        self.tail_twin: NumpyTwin | CasadiPlan | None
        if isinstance(dyn, TwinDynamics):
            self.twin, self.tail_twin = NumpyTwin(dyn), NumpyTwin(dyn, tail) if tail else None
        else:
            self.twin, self.tail_twin = CasadiPlan(dyn, n), CasadiPlan(dyn, n, tail) if tail else None
        self.costs = CostModel(dyn, spec, settings)
        self.qp = DenseQp(settings.qp_solver, qp_options(settings))

    def current(self, z_now: np.ndarray) -> np.ndarray:
        """Return the ensemble-mean CVs (n_cv,) the twin reads from latents z_now (M*nz,) now."""
        return self.twin.readout_now(z_now).mean(axis=0)

    def evaluate(
        self,
        u: np.ndarray,
        z_now: np.ndarray,
        d: np.ndarray,
        u_now: np.ndarray,
        weights: Weights,
        limits: CvLimits,
        linearise: bool = True,
        cv_bias: np.ndarray | None = None,
        terminal: Terminal | None = None,
        lin: Linearisation | None = None,
    ) -> Evaluation:
        """Return plan u (n_mv, N) on the exact twin, with its sensitivities when linearise is set.

        cv_bias (n_cv,), if given, is added to every member's CVs at every step (a constant output disturbance):
        it shifts the means, not the spread or the sensitivities. terminal: the solve's terminal cost model.
        lin: the twin already linearised along u, if at hand.
        """
        bias = 0.0 if cv_bias is None else cv_bias
        if linearise:
            lin = lin or self.twin.linearise(z_now, u, d)
            return self.costs.evaluate(u, lin.y + bias, d, u_now, weights, limits, lin, terminal=terminal)
        y = self.twin.rollout(z_now, u, d) + bias  # (N, M, n_cv)
        return self.costs.evaluate(u, y, d, u_now, weights, limits, terminal=terminal)

    def terminal(
        self, u: np.ndarray, z_now: np.ndarray, d: np.ndarray, cv_bias: np.ndarray | None = None
    ) -> tuple[Terminal | None, Linearisation | None]:
        """Return the terminal cost's model, the tail past plan u (n_mv, N) linear in the plan, and the twin
        linearised along u (one rollout gives both); (None, None) without a tail."""
        if self.tail_twin is None:
            return None, None
        lin = self.tail_twin.linearise(z_now, u, d)
        assert lin.y_tail is not None and lin.g_tail is not None
        bias = np.zeros(len(self.dyn.cv)) if cv_bias is None else cv_bias
        tail = Terminal(np.array(u, dtype=float), lin.y_tail.mean(axis=1).T + bias[:, None], lin.g_tail.mean(axis=1))
        return tail, lin

    def solve(
        self,
        *,
        z_now: np.ndarray,
        u_now: np.ndarray,
        d: np.ndarray,
        u_start: np.ndarray,
        mv: MvBounds,
        weights: Weights,
        limits: CvLimits,
        cv_bias: np.ndarray | None = None,
    ) -> SqpOutcome:
        """Run the SQP from plan u_start (already within the MV and move limits) until the plan stops moving."""
        settings, dyn = self.settings, self.dyn
        n, n_mv, nu = settings.horizon, len(dyn.mv), settings.horizon * len(dyn.mv)
        started = time.perf_counter()
        # The terminal cost's model, linearised once at the start plan: one fixed objective for the whole solve.
        # Re-linearising the tail at every SQP step needed 5.3 linearisations per solve on the heat train's closed
        # loop against 3.7 without a tail (its nonlinearity, misjudged by each QP, cost rejected steps); once, 2.8.
        # Linearising it again at the converged plan when that moved > 0.25 MV stds (up to twice) needed 7.5, for
        # the same gain.
        terminal, lin = self.terminal(u_start, z_now, d, cv_bias)
        ref = self.evaluate(u_start, z_now, d, u_now, weights, limits, cv_bias=cv_bias, terminal=terminal, lin=lin)
        region, iterations, raw = TrustRegion(settings, dyn.mv_std), 0, "not started"
        backoff = np.zeros((2, len(dyn.cv), n))  # tightening of the linearised safety low/high rows
        corrections = 0
        model = self._model(ref, d, u_now, weights, limits, mv.step_move)
        accepted = 0
        for linearisations in range(1, settings.sqp_iterations + 1):  # noqa: B007 (reported after the loop)
            row_low, row_high = model.row_bounds(backoff)
            low, high = region.box(ref.u, mv.low, mv.high)
            slack = len(model.gradient) - nu  # the soft-limit slacks
            lbx = np.concatenate([(low - ref.u).T.reshape(-1), np.zeros(slack)])
            ubx = np.concatenate([(high - ref.u).T.reshape(-1), np.full(slack, np.inf)])
            x, objective, raw, its = self.qp.solve(
                model.hessian, model.gradient, model.rows, row_low, row_high, lbx, ubx, optional=slack
            )
            iterations += its
            elapsed = time.perf_counter() - started
            if elapsed > settings.max_solver_time_s:
                return SqpOutcome(MpcStatus.TIMEOUT, raw, ref, iterations, linearisations, elapsed, accepted)
            if x is None:
                if ref.safe and region.retry_smaller():  # the reference is feasible, so a smaller step is too
                    backoff[:] = 0.0
                    continue
                status = MpcStatus.INFEASIBLE if not ref.safe else MpcStatus.SOLVER_FAILED
                return SqpOutcome(status, raw, ref, iterations, linearisations, elapsed, accepted)
            du = x[:nu].reshape(n, n_mv).T
            u_new = project(ref.u + du, u_now, mv.low, mv.high, mv.step_move)
            step, predicted = region.step(u_new, ref.u), ref.cost - (model.constant + objective)
            if region.converged(step, predicted, ref.cost):
                break
            trial = self.evaluate(u_new, z_now, d, u_now, weights, limits, cv_bias=cv_bias, terminal=terminal)
            if not trial.safe and corrections < SAFETY_CORRECTIONS and model.safety_low.size + model.safety_high.size:
                # Second-order correction: tighten each linearised safety row by the curvature error at the trial.
                backoff = np.maximum(backoff + self._safety_error(ref, trial, u_new - ref.u, model), 0.0)
                backoff = np.minimum(backoff, self._margins(ref, limits))  # holding the reference stays feasible
                corrections += 1
                continue
            if region.judge(predicted=predicted, actual=ref.cost - trial.cost, step=step, safe=trial.safe):
                ref, corrections, accepted = trial, 0, accepted + 1
                model = self._model(ref, d, u_now, weights, limits, mv.step_move)
            elif region.exhausted:
                return SqpOutcome(
                    MpcStatus.SOLVER_FAILED,
                    f"{raw}, but no step improves the exact twin's cost",
                    ref,
                    iterations,
                    linearisations,
                    time.perf_counter() - started,
                    accepted,
                )
        else:
            elapsed = time.perf_counter() - started
            return SqpOutcome(
                # "plan still moving" is not a timeout when the time budget was kept
                MpcStatus.TIMEOUT if elapsed > settings.max_solver_time_s else MpcStatus.NOT_CONVERGED,
                f"{raw}, plan still moving after {settings.sqp_iterations} linearisations",
                ref,
                iterations,
                settings.sqp_iterations,
                elapsed,
                accepted,
            )
        status = MpcStatus.OPTIMAL if ref.safe else MpcStatus.INFEASIBLE
        return SqpOutcome(status, raw, ref, iterations, linearisations, time.perf_counter() - started, accepted)

    # ---------------------------------------------------------------- the QP of one reference

    def _model(
        self,
        ref: Evaluation,
        d: np.ndarray,
        u_now: np.ndarray,
        weights: Weights,
        limits: CvLimits,
        step_move: np.ndarray,
    ) -> QpModel:
        """Return the QP of the MPC along reference plan ref, in its change dU and the soft-limit slacks S."""
        dyn, settings, costs = self.dyn, self.settings, self.costs
        n, n_mv = settings.horizon, len(dyn.mv)

        # ============================================================ decision variables
        # x = (dU, S): dU = vec(U - U_ref) step-major (n_mv * N,); S the slack of each soft-limited CV at each
        # step (and the tail's end), in CV stds, ordered (soft CV, step). Slacks not in a working-set row stay at 0.
        nu = n * n_mv
        soft = np.flatnonzero(np.isfinite(limits.low) | np.isfinite(limits.high))
        # with a terminal tail, one more slack per soft CV: at the tail's end, weighted as held over the tail
        g_tail = ref.tail_g  # (K, n_cv, nu)
        t = 0 if ref.tail_mean is None or g_tail is None else 1
        ns = len(soft) * (n + t)

        # ============================================================ dynamics (the twin condensed onto the plan)
        # mean Y = Y_ref + G_mean dU and safety half-width = half_ref + G_half dU, exact in value and slope at U_ref
        g_mean, g_half = costs.safety_rows(ref)  # (n_cv, N, nu) each

        # ============================================================ objective
        h_u, g_u, constant = costs.quadratic(ref, d, u_now, weights)  # economics, targets, moves, uncertainty
        per_step = np.concatenate([np.ones(n), np.full(t, float(costs.tail))]) / n
        sw = np.outer(weights.soft_weight[soft], per_step).reshape(-1)  # sw * (S + S^2), L1 plus smoothing
        hessian = np.zeros((nu + ns, nu + ns))
        hessian[:nu, :nu] = h_u
        hessian[nu:, nu:] = np.diag(2 * sw)
        gradient = np.concatenate([g_u, sw])

        # ============================================================ constraints
        blocks, lows, highs = [], [], []
        no_slack = np.zeros((n, ns))
        # moves: Delta vec(U) within +/- the per-step move limit (0 over the held tail), relative to the reference's
        ref_moves = np.diff(np.hstack([u_now[:, None], ref.u]), axis=1)  # (n_mv, N)
        for i in np.flatnonzero(np.any(np.isfinite(step_move), axis=1)):
            blocks.append(np.hstack([costs.delta[i::n_mv], no_slack]))  # (N, nu): U[i,k] - U[i,k-1]
            lows.append(-step_move[i] - ref_moves[i])
            highs.append(step_move[i] - ref_moves[i])
        # soft CV limits: low <= Y + S * std, Y - S * std <= high
        g_end = g_tail[-1] if g_tail is not None and t else None  # (n_cv, nu) d (tail's end) / d vec(U)
        for j, c in enumerate(soft):
            e = np.zeros((n + t, ns))
            e[np.arange(n + t), j * (n + t) + np.arange(n + t)] = dyn.cv_std[c]
            g_c, y_c = g_mean[c], ref.mean[c]
            if t:
                assert g_end is not None and ref.tail_mean is not None
                g_c, y_c = np.vstack([g_c, g_end[c]]), np.append(y_c, ref.tail_mean[c, -1])
            if np.isfinite(limits.low[c]):
                blocks.append(np.hstack([g_c, e]))
                lows.append(limits.low[c] - y_c)
                highs.append(np.full(n + t, np.inf))
            if np.isfinite(limits.high[c]):
                blocks.append(np.hstack([g_c, -e]))
                lows.append(np.full(n + t, -np.inf))
                highs.append(limits.high[c] - y_c)
        # safety CV limits (hard): safety_low <= Y - half, Y + half <= safety_high
        safety_low = np.flatnonzero(np.isfinite(limits.safety_low))
        safety_high = np.flatnonzero(np.isfinite(limits.safety_high))
        first_safety_row = sum(len(b) for b in blocks)
        for c in safety_low:
            blocks.append(np.hstack([g_mean[c] - g_half[c], no_slack]))
            lows.append(limits.safety_low[c] - (ref.mean[c] - ref.half[c]))
            highs.append(np.full(n, np.inf))
        for c in safety_high:
            blocks.append(np.hstack([g_mean[c] + g_half[c], no_slack]))
            lows.append(np.full(n, -np.inf))
            highs.append(limits.safety_high[c] - (ref.mean[c] + ref.half[c]))

        return QpModel(
            hessian=hessian,
            gradient=gradient,
            constant=constant,
            rows=np.vstack(blocks) if blocks else np.zeros((0, nu + ns)),
            row_low=np.concatenate(lows) if lows else np.zeros(0),
            row_high=np.concatenate(highs) if highs else np.zeros(0),
            soft=soft,
            safety_low=safety_low,
            safety_high=safety_high,
            first_safety_row=first_safety_row,
        )

    def _margins(self, ref: Evaluation, limits: CvLimits) -> np.ndarray:
        """Return (2, n_cv, N): how far ref's mean -/+ half is inside the safety low/high limits (>= 0)."""
        low = ref.mean - ref.half - limits.safety_low[:, None]
        high = limits.safety_high[:, None] - (ref.mean + ref.half)
        return np.maximum(np.stack([low, high]) * (1 - 1e-6), 0.0)

    def _safety_error(self, ref: Evaluation, trial: Evaluation, du: np.ndarray, model: QpModel) -> np.ndarray:
        """Return (2, n_cv, N): how far the exact twin's mean -/+ half at the trial is beyond its linearisation."""
        g_mean, g_half = self.costs.safety_rows(ref)
        dvec = du.T.reshape(-1)
        err = np.zeros((2, len(self.dyn.cv), self.settings.horizon))
        for c in model.safety_low:  # rows are >= limits: the error is how much lower the exact value is
            lin = ref.mean[c] - ref.half[c] + (g_mean[c] - g_half[c]) @ dvec
            err[0, c] = lin - (trial.mean[c] - trial.half[c])
        for c in model.safety_high:
            lin = ref.mean[c] + ref.half[c] + (g_mean[c] + g_half[c]) @ dvec
            err[1, c] = (trial.mean[c] + trial.half[c]) - lin
        return err


def project(u: np.ndarray, u_now: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_move: np.ndarray) -> np.ndarray:
    """Return plan u (n_mv, N) moved onto the MV and move limits, step by step (solvers may overstep by ~1e-8).

    max_move: the move limit (n_mv,), or per step (n_mv, N).
    """
    out, previous = np.empty_like(u), u_now
    moves = max_move if max_move.ndim == 2 else np.repeat(max_move[:, None], u.shape[1], axis=1)
    for k in range(u.shape[1]):
        # lo/hi are reachable from any admissible previous setpoint, so this interval is never empty
        low = np.maximum(lo[:, k], previous - moves[:, k])
        out[:, k] = np.minimum(np.maximum(u[:, k], low), np.minimum(hi[:, k], previous + moves[:, k]))
        previous = out[:, k]
    return out


def shift_steps(matrix: np.ndarray) -> np.ndarray:
    """Drop the first column (the step now past) and repeat the last: the previous plan, one step on."""
    return np.hstack([matrix[:, 1:], matrix[:, -1:]]) if matrix.shape[1] else matrix
