"""The MPC cost on the exact twin, and its quadratic model in the plan's change: the condensed SQP's objective.

Along a reference plan U_ref the exact twin gives every member's CVs Y_m and their sensitivities G_m = dY_m/dU
(optimizer.linearize). With Y_m = Y_m,ref + G_m dU the MPC cost is quadratic in (dU, S) up to the economic
products (exact for two-tag terms, second-order Taylor beyond); its Hessian is made positive definite by clipping
eigenvalues, so a dense convex QP solver applies. Gradients are exact, so a fixed point of the SQP is a KKT point of
the MPC problem on the exact twin. Safety limits on mean +/- the safety half-width (optimizer.bands: the twin's calibrated interval, or k raw
spreads without a calibration) are linearised; optimizer.sqp builds the QP,
tightens them by the curvature error seen at the trial (a second-order correction) and checks every plan on the
exact twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.bands import VAR_EPS, Calibration, plan_band
from optimizer.limits import CvLimits, Weights, soft_slack, terminal_tail_steps
from optimizer.linearize import Linearisation
from optimizer.model import Dynamics
from optimizer.ood import plan_ood
from optimizer.spec import MpcSettings, MpcSpec


@dataclass(frozen=True)
class Evaluation:
    """The exact twin's prediction of a plan and the MPC cost there."""

    lin: Linearisation | None  # with sensitivities when linearised, else None
    u: np.ndarray  # (n_mv, N)
    y_members: np.ndarray  # (N, M, n_cv)
    mean: np.ndarray  # (n_cv, N) ensemble mean
    var_n: np.ndarray  # (n_cv, N) sample variance over members in CV stds^2
    spread: np.ndarray  # (n_cv, N) std_cv * sqrt(var_n + VAR_EPS), engineering units
    slack: np.ndarray  # (n_cv, N) soft-limit slack the mean needs, CV stds
    cost: float
    safe: bool  # mean -/+ half within the safety limits (1e-6 CV std tolerance)
    half: np.ndarray  # (n_cv, N) safety half-width, smoothed (optimizer.bands), engineering units
    ood: np.ndarray | None = None  # (N,) the twin's OOD score along the plan, when limited and linearised
    tail_mean: np.ndarray | None = None  # (n_cv, K) ensemble mean past the plan, its last setpoints held
    tail_slack: np.ndarray | None = None  # (n_cv,) soft-limit slack the tail's last mean needs, CV stds
    tail_g: np.ndarray | None = None  # (K, n_cv, nu) d tail_mean / d vec(U), from the solve's terminal model


@dataclass(frozen=True)
class Terminal:
    """The terminal tail's ensemble mean, linear in the plan: the twin linearised past one plan, once per solve.

    The tail is a cost, never a hard limit, so a model frozen for the solve is enough, and the SQP then judges its
    steps on a fixed objective whose tail part its QP models exactly. Re-linearised at every SQP step instead, the
    30-step tail's nonlinearity (misjudged by each QP: rejected steps) took 5.3 linearisations per solve on the heat
    train's closed loop against 2.8 (3.7 with no tail), and the plans ended alike.
    """

    u: np.ndarray  # (n_mv, N) the plan it was linearised along
    mean: np.ndarray  # (n_cv, K) ensemble mean past that plan, its last setpoints (and forecast) held
    g: np.ndarray  # (K, n_cv, nu) d mean / d vec(U), vec step-major

    def at(self, u: np.ndarray) -> np.ndarray:
        """Return the tail's ensemble mean (n_cv, K) under plan u (n_mv, N), by the linear model."""
        return self.mean + (self.g @ (u - self.u).T.reshape(-1)).T


class CostModel:
    """The MPC cost on the exact twin, and its quadratic model along a linearisation, in numpy."""

    def __init__(self, dyn: Dynamics, spec: MpcSpec, settings: MpcSettings) -> None:
        self.dyn, self.settings = dyn, settings
        self.n, self.n_mv, self.n_cv, self.m = settings.horizon, len(dyn.mv), len(dyn.cv), dyn.members
        # each objective term's factors as (kind, index): kind 0 = CV, 1 = MV, 2 = DV
        kinds = {
            **{c: (0, i) for i, c in enumerate(dyn.cv)},
            **{m: (1, i) for i, m in enumerate(dyn.mv)},
            **{d: (2, i) for i, d in enumerate(dyn.dv)},
        }
        self.terms = [[kinds[t] for t in term.tags] for term in spec.objective_terms]
        self.targets = [dyn.cv.index(t.tag) for t in spec.targets]
        nu = self.n * self.n_mv
        # moves = Delta vec(U) - (u_now in the first step); Delta is (nu, nu)
        self.delta = np.eye(nu) - np.eye(nu, k=-self.n_mv)
        w = np.tile(1.0 / dyn.mv_std**2, self.n)
        self.h_moves = 2 * settings.move_weight / self.n * self.delta.T @ (w[:, None] * self.delta)
        # safety limits hold for mean -/+ this band: the calibrated interval, or safety_spread_k raw spreads
        self.use_calibration(dyn.calibration)
        # the OOD score along the plan above max_plan_ood is penalised (quadratically), when the twin exports one
        self.ood = dyn.ood if settings.max_plan_ood is not None else None
        self.norm = (dyn.mv_mean, dyn.mv_std, dyn.dv_mean, dyn.dv_std)
        # Terminal cost: the objective counts K steps past the plan, its last setpoints held, like the plan's own
        # (a prediction horizon N + K over a control horizon N), and the soft limits at the tail's end as held over
        # it, so what the final setpoints cost or earn after the horizon is paid for within it. The tail's CVs come
        # from a model linear in the plan, linearised once per solve (Terminal).
        self.tail = terminal_tail_steps(settings)

    def use_calibration(self, calibration: Calibration | None) -> None:
        """Hold safety limits on mean -/+ this calibration's band from now on (the adaptive band widens it per call)."""
        self.safety = plan_band(calibration, self.m, self.n_cv, self.n, self.settings.safety_spread_k, smooth=True)

    # ---------------------------------------------------------------- the exact cost

    def evaluate(
        self,
        u: np.ndarray,
        y_members: np.ndarray,
        d: np.ndarray,
        u_now: np.ndarray,
        weights: Weights,
        limits: CvLimits,
        lin: Linearisation | None = None,
        terminal: Terminal | None = None,
    ) -> Evaluation:
        """Return the prediction statistics and the MPC cost of plan u with member CVs y_members (N, M, n_cv).

        terminal: the solve's model of the CVs past the plan with its last setpoints held (the terminal cost).
        """
        dyn, s, n = self.dyn, self.settings, self.n
        std = dyn.cv_std[:, None]

        # ============================================================ the ensemble's prediction
        mean = y_members.mean(axis=1).T  # (n_cv, N)
        if self.m > 1:
            var_n = (y_members.var(axis=1, ddof=1) / dyn.cv_std**2).T  # sample variance over members, CV stds^2
        else:
            var_n = np.zeros_like(mean)
        spread = std * np.sqrt(var_n + VAR_EPS) if self.m > 1 else np.zeros_like(mean)
        slack = soft_slack(mean, limits, dyn.cv_std)  # (n_cv, N) CV stds: soft limits are met through the slack
        moves = np.diff(np.hstack([u_now[:, None], u]), axis=1) / dyn.mv_std[:, None]  # (n_mv, N) MV stds

        # ============================================================ objective
        cost = -s.economic_weight * float(np.sum(self.value(mean, u, d, weights.price))) / n
        cost += s.move_weight * float(np.sum(moves**2)) / n  # move suppression
        if self.m > 1:
            cost += s.uncertainty_weight * float(np.sum(var_n)) / n
        for i, c in enumerate(self.targets):
            cost += weights.target_weight[i] * float(np.sum((mean[c] - weights.target[i]) ** 2)) / n
        cost += float(weights.soft_weight @ np.sum(slack + slack**2, axis=1)) / n  # exact (L1) plus smoothing (L2)
        ood = None
        if self.ood is not None and lin is not None and lin.z is not None and lin.z0 is not None:
            ood, _ = plan_ood(self.ood, self.norm, lin.z0, lin.z, u, d)
            excess = np.maximum(ood - float(s.max_plan_ood or 0.0), 0.0)
            cost += s.plan_ood_weight * float(np.sum(excess**2)) / n
        tail_mean = tail_slack = tail_g = None
        if terminal is not None:
            tail_mean, tail_g = terminal.at(u), terminal.g  # (n_cv, K), (K, n_cv, nu)
            u_t, d_t = self._held(u, d, tail_mean.shape[1])
            cost -= s.economic_weight * float(np.sum(self.value(tail_mean, u_t, d_t, weights.price))) / n
            for i, c in enumerate(self.targets):
                cost += weights.target_weight[i] * float(np.sum((tail_mean[c] - weights.target[i]) ** 2)) / n
            tail_slack = soft_slack(tail_mean[:, -1:], limits, dyn.cv_std)[:, 0]
            cost += self.tail * float(weights.soft_weight @ (tail_slack + tail_slack**2)) / n  # as held over the tail

        # ============================================================ constraints (hard: safety on mean -/+ half)
        half, tol = self.safety.half(var_n, dyn.cv_std), 1e-6 * std
        safe = bool(
            np.all(mean - half >= limits.safety_low[:, None] - tol)
            and np.all(mean + half <= limits.safety_high[:, None] + tol)
        )
        return Evaluation(
            lin, u, y_members, mean, var_n, spread, slack, cost, safe, half, ood, tail_mean, tail_slack, tail_g
        )

    def soft_penalty(self, weights: Weights, slack: np.ndarray, tail_slack: np.ndarray | None) -> float:
        """Return the soft-limit penalty of slacks (n_cv, N) and the tail's end (n_cv,), held over the tail."""
        penalty = float(weights.soft_weight @ np.sum(slack + slack**2, axis=1))  # exact (L1) plus smoothing (L2)
        if tail_slack is not None:
            penalty += self.tail * float(weights.soft_weight @ (tail_slack + tail_slack**2))
        return penalty / self.n

    def _held(self, u: np.ndarray, d: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the plan's last setpoints (n_mv, steps) and forecast (n_dv, steps), held past the plan."""
        return np.repeat(u[:, -1:], steps, axis=1), np.repeat(d[:, -1:], steps, axis=1)

    def value(self, y: np.ndarray, u: np.ndarray, d: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Return the economic value per step (N,), currency per hour, of CVs y (n_cv, N), plan u and forecast d."""
        rows = (y, u, d)
        value = np.zeros(u.shape[1])
        for term, p in zip(self.terms, price, strict=True):
            product = np.ones(u.shape[1])
            for kind, i in term:
                product = product * rows[kind][i]
            value += p * product
        return value

    # ---------------------------------------------------------------- the quadratic model

    def quadratic(
        self, ref: Evaluation, d: np.ndarray, u_now: np.ndarray, weights: Weights
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Return (H (nu, nu) positive definite, g (nu,), cost at ref without the soft penalty) in dU = U - U_ref."""
        lin, dyn, s, n, nu = ref.lin, self.dyn, self.settings, self.n, self.n * self.n_mv
        assert lin is not None
        g_mean = lin.g.mean(axis=1)  # (N, n_cv, nu)
        grad = np.zeros(nu)
        hess = self.h_moves.copy()
        moves = np.diff(np.hstack([u_now[:, None], ref.u]), axis=1) / dyn.mv_std[:, None] ** 2  # (n_mv, N)
        grad += 2 * s.move_weight / n * self.delta.T @ moves.T.reshape(-1)
        for i, c in enumerate(self.targets):
            gc = g_mean[:, c, :]  # (N, nu)
            w = 2 * weights.target_weight[i] / n
            grad += w * (ref.mean[c] - weights.target[i]) @ gc
            hess += w * gc.T @ gc
        if self.m > 1 and s.uncertainty_weight > 0:
            scale = np.sqrt(2 * s.uncertainty_weight / n / (self.m - 1))
            dev = (ref.y_members - ref.mean.T[:, None, :]) / dyn.cv_std  # (N, M, n_cv)
            dg = (lin.g - g_mean[:, None]) / dyn.cv_std[:, None]  # (N, M, n_cv, nu)
            flat = scale * dg.reshape(-1, nu)
            grad += scale * dev.reshape(-1) @ flat
            hess += flat.T @ flat
        if self.ood is not None and lin.z is not None and lin.z0 is not None and lin.gz is not None:
            # OOD excess along the plan, Gauss-Newton: w/N sum_k r_k^2, r_k = max(score_k - limit, 0)
            score, slope = plan_ood(self.ood, self.norm, lin.z0, lin.z, ref.u, d, gz=lin.gz)
            assert slope is not None
            r = np.maximum(score - float(s.max_plan_ood or 0.0), 0.0)
            w = 2 * s.plan_ood_weight / n
            grad += w * r @ slope
            hess += w * slope[r > 0].T @ slope[r > 0]
        # economic terms: -w/N sum_k price * prod_i f_i[k]; factor gradients (N, nu)
        self._economics(grad, hess, (ref.mean, ref.u, d), lambda kind, i: self._factor_grad(kind, i, g_mean), weights)
        if ref.tail_mean is not None and ref.tail_g is not None:  # the terminal tail, its last setpoints held
            g_tail = ref.tail_g  # (K, n_cv, nu)
            for i, c in enumerate(self.targets):
                w = 2 * weights.target_weight[i] / n
                grad += w * (ref.tail_mean[c] - weights.target[i]) @ g_tail[:, c, :]
                hess += w * g_tail[:, c, :].T @ g_tail[:, c, :]
            u_t, d_t = self._held(ref.u, d, self.tail)
            self._economics(
                grad, hess, (ref.tail_mean, u_t, d_t), lambda kind, i: self._tail_grad(kind, i, g_tail), weights
            )
        return (
            convexify(hess),
            grad,
            ref.cost - self.soft_penalty(weights, ref.slack, ref.tail_slack),
        )

    def _economics(self, grad: np.ndarray, hess: np.ndarray, rows: tuple, factor_grad: Any, weights: Weights) -> None:
        """Add the economic terms' gradient and Hessian over the steps of rows (CVs, MVs, DVs), in place."""
        n = rows[1].shape[1]
        ew = -self.settings.economic_weight * weights.price / self.n
        for term, w in zip(self.terms, ew, strict=True):
            values = [rows[kind][i] for kind, i in term]
            grads = [factor_grad(kind, i) for kind, i in term]
            for a in range(len(term)):
                others = np.prod([values[b] for b in range(len(term)) if b != a], axis=0) if len(term) > 1 else 1.0
                if grads[a] is not None:
                    grad += w * (others * np.ones(n)) @ grads[a]
                ga = grads[a]
                for b, gb in enumerate(grads):
                    if b == a or ga is None or gb is None:
                        continue
                    rest = [values[c] for c in range(len(term)) if c not in (a, b)]
                    coef = np.prod(rest, axis=0) if rest else np.ones(n)
                    hess += w * (ga.T * coef) @ gb

    def _factor_grad(self, kind: int, i: int, g_mean: np.ndarray) -> np.ndarray | None:
        """Return d factor[k] / d vec(U) as (N, nu), or None for a DV (not decided)."""
        if kind == 0:
            return g_mean[:, i, :]
        if kind == 1:
            out = np.zeros((self.n, self.n * self.n_mv))
            out[np.arange(self.n), np.arange(self.n) * self.n_mv + i] = 1.0
            return out
        return None

    def _tail_grad(self, kind: int, i: int, g_tail: np.ndarray) -> np.ndarray | None:
        """Return d factor / d vec(U) over the tail (K, nu): a CV's sensitivity, or the held last setpoint's."""
        if kind == 0:
            return g_tail[:, i, :]
        if kind == 1:
            out = np.zeros((self.tail, self.n * self.n_mv))
            out[:, (self.n - 1) * self.n_mv + i] = 1.0
            return out
        return None

    def safety_rows(self, ref: Evaluation) -> tuple[np.ndarray, np.ndarray]:
        """Return d mean / dU and d half / dU (the safety half-width) along ref, each (n_cv, N, nu)."""
        lin, dyn = ref.lin, self.dyn
        assert lin is not None
        g_mean = lin.g.mean(axis=1)  # (N, n_cv, nu)
        if self.m == 1:
            return np.swapaxes(g_mean, 0, 1), np.zeros_like(np.swapaxes(g_mean, 0, 1))
        dev = ref.y_members - ref.mean.T[:, None, :]  # (N, M, n_cv)
        # d var_n / d y_m = 2 dev_m / (cv_std^2 (M - 1)), times d half / d var_n
        slope = self.safety.slope(ref.var_n, dyn.cv_std).T  # (N, n_cv)
        coef = 2 * dev * slope[:, None, :] / (dyn.cv_std**2 * (self.m - 1))  # d half / d y_m, (N, M, n_cv)
        g_half = np.einsum("kmc,kmca->kca", coef, lin.g)
        return np.swapaxes(g_mean, 0, 1), np.swapaxes(g_half, 0, 1)


def convexify(hess: np.ndarray) -> np.ndarray:
    """Return the symmetric matrix with its eigenvalues raised to a small positive floor (unchanged if already)."""
    hess = 0.5 * (hess + hess.T)
    floor = 1e-8 * (1.0 + float(np.max(np.abs(np.diag(hess)))))
    try:
        np.linalg.cholesky(hess - floor * np.eye(len(hess)))
        return hess
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(hess)
        return (v * np.maximum(w, floor)) @ v.T
