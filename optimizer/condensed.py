"""The SQP subproblem condensed onto the MV plan: a convex QP in the moves and the soft-limit slacks.

Along a reference plan U_ref the exact twin gives every member's CVs Y_m and their sensitivities G_m = dY_m/dU
(optimizer.linearize). With Y_m = Y_m,ref + G_m dU the MPC cost is quadratic in (dU, S) up to the economic
products (exact for two-tag terms, second-order Taylor beyond); its Hessian is made positive definite by clipping
eigenvalues, so a dense convex QP solver applies. Gradients are exact, so a fixed point of the SQP is a KKT point of
the MPC problem on the exact twin. Safety limits on mean +/- k * spread are linearised; the controller tightens
them by the curvature error seen at the trial (a second-order correction) and checks every plan on the exact twin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import casadi as ca
import numpy as np

from optimizer.linearize import Linearisation
from optimizer.model import Dynamics
from optimizer.spec import MpcSettings, MpcSpec

VAR_EPS = 1e-6  # as in optimizer.problem: added to the normalised ensemble variance under the square root


@dataclass(frozen=True)
class Weights:
    """Prices, targets and soft-limit weights of one solve (they may change between solves)."""

    price: np.ndarray  # (n_terms,) currency per hour per unit of each term's product
    target: np.ndarray  # (n_targets,)
    target_weight: np.ndarray  # (n_targets,)
    soft_weight: np.ndarray  # (n_cv,) per CV, from its rank


@dataclass(frozen=True)
class CvLimits:
    """CV limits of one solve in engineering units, +/- inf where none."""

    low: np.ndarray  # (n_cv,) operating (soft)
    high: np.ndarray
    safety_low: np.ndarray  # (n_cv,) safety (hard)
    safety_high: np.ndarray


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
    safe: bool  # mean -/+ k * spread within the safety limits (1e-6 CV std tolerance)


class CostModel:
    """The MPC cost on the exact twin, and its quadratic model along a linearisation, in numpy."""

    def __init__(self, dyn: Dynamics, spec: MpcSpec, settings: MpcSettings) -> None:
        self.dyn, self.settings = dyn, settings
        self.n, self.n_mv, self.n_cv, self.m = settings.horizon, len(dyn.mv), len(dyn.cv), dyn.members
        # each objective term's factors as (kind, index): kind 0 = CV, 1 = MV, 2 = DV
        kinds = {**{c: (0, i) for i, c in enumerate(dyn.cv)}, **{m: (1, i) for i, m in enumerate(dyn.mv)},
                 **{d: (2, i) for i, d in enumerate(dyn.dv)}}
        self.terms = [[kinds[t] for t in term.tags] for term in spec.objective_terms]
        self.targets = [dyn.cv.index(t.tag) for t in spec.targets]
        nu = self.n * self.n_mv
        # moves = Delta vec(U) - (u_now in the first step); Delta is (nu, nu)
        self.delta = np.eye(nu) - np.eye(nu, k=-self.n_mv)
        w = np.tile(1.0 / dyn.mv_std**2, self.n)
        self.h_moves = 2 * settings.move_weight / self.n * self.delta.T @ (w[:, None] * self.delta)

    # ---------------------------------------------------------------- the exact cost

    def evaluate(self, u: np.ndarray, y_members: np.ndarray, d: np.ndarray, u_now: np.ndarray, weights: Weights,
                 limits: CvLimits, lin: Linearisation | None = None) -> Evaluation:
        """Return the prediction statistics and the MPC cost of plan u with member CVs y_members (N, M, n_cv)."""
        dyn, s, n = self.dyn, self.settings, self.n
        std = dyn.cv_std[:, None]
        mean = y_members.mean(axis=1).T  # (n_cv, N)
        if self.m > 1:
            var_n = (y_members.var(axis=1, ddof=1) / dyn.cv_std**2).T
        else:
            var_n = np.zeros_like(mean)
        spread = std * np.sqrt(var_n + VAR_EPS) if self.m > 1 else np.zeros_like(mean)
        slack = np.maximum(np.maximum(limits.low[:, None] - mean, mean - limits.high[:, None]) / std, 0.0)
        moves = np.diff(np.hstack([u_now[:, None], u]), axis=1) / dyn.mv_std[:, None]
        cost = -s.economic_weight * float(np.sum(self.value(mean, u, d, weights.price))) / n
        cost += s.move_weight * float(np.sum(moves**2)) / n
        if self.m > 1:
            cost += s.uncertainty_weight * float(np.sum(var_n)) / n
        for i, c in enumerate(self.targets):
            cost += weights.target_weight[i] * float(np.sum((mean[c] - weights.target[i]) ** 2)) / n
        cost += float(weights.soft_weight @ np.sum(slack + slack**2, axis=1)) / n
        k, tol = s.safety_spread_k, 1e-6 * std
        safe = bool(np.all(mean - k * spread >= limits.safety_low[:, None] - tol)
                    and np.all(mean + k * spread <= limits.safety_high[:, None] + tol))
        return Evaluation(lin, u, y_members, mean, var_n, spread, slack, cost, safe)

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

    def quadratic(self, ref: Evaluation, d: np.ndarray, u_now: np.ndarray,
                  weights: Weights) -> tuple[np.ndarray, np.ndarray, float]:
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
        # economic terms: -w/N sum_k price * prod_i f_i[k]; factor gradients (N, nu)
        rows = (ref.mean, ref.u, d)
        ew = -s.economic_weight * weights.price / n
        for term, w in zip(self.terms, ew, strict=True):
            values = [rows[kind][i] for kind, i in term]
            grads = [self._factor_grad(kind, i, g_mean) for kind, i in term]
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
        return convexify(hess), grad, ref.cost - float(weights.soft_weight @ np.sum(ref.slack + ref.slack**2, axis=1)) / n

    def _factor_grad(self, kind: int, i: int, g_mean: np.ndarray) -> np.ndarray | None:
        """Return d factor[k] / d vec(U) as (N, nu), or None for a DV (not decided)."""
        if kind == 0:
            return g_mean[:, i, :]
        if kind == 1:
            out = np.zeros((self.n, self.n * self.n_mv))
            out[np.arange(self.n), np.arange(self.n) * self.n_mv + i] = 1.0
            return out
        return None

    def safety_rows(self, ref: Evaluation) -> tuple[np.ndarray, np.ndarray]:
        """Return d mean / dU and d spread / dU along ref, each (n_cv, N, nu)."""
        lin, dyn = ref.lin, self.dyn
        assert lin is not None
        g_mean = lin.g.mean(axis=1)  # (N, n_cv, nu)
        if self.m == 1:
            return np.swapaxes(g_mean, 0, 1), np.zeros_like(np.swapaxes(g_mean, 0, 1))
        dev = ref.y_members - ref.mean.T[:, None, :]  # (N, M, n_cv)
        root = np.sqrt(ref.var_n.T + VAR_EPS)  # (N, n_cv)
        coef = dev / (dyn.cv_std * (self.m - 1) * root[:, None, :])  # d spread / d y_m, (N, M, n_cv)
        g_spread = np.einsum("kmc,kmca->kca", coef, lin.g)
        return np.swapaxes(g_mean, 0, 1), np.swapaxes(g_spread, 0, 1)


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


class DenseQp:
    """A dense convex QP solved on a working set of its rows, with a QP solver from the casadi wheel.

    Most rows (soft and safety CV limits, move limits over the horizon) are far from their bounds, and an
    active-set solver spends its time on each row and slack variable it must discover. So the QP is solved with
    only the working-set rows (and the slacks they use; the others stay at their lower bound 0), the rows it
    violates are added, and so on: the first solution that meets every row is the full QP's solution (convexity).
    The working set starts from the rows active last time. Solvers are cached per padded size.
    """

    def __init__(self, plugin: str, options: Mapping[str, Any]) -> None:
        self.plugin, self.options = plugin, dict(options)
        self._solvers: dict[tuple[int, int], ca.Function] = {}
        self.active = np.zeros(0, dtype=int)  # rows active at the last solution (indices into the full row list)
        self._rows = -1  # row count of the problem they belong to

    def solve(self, h: np.ndarray, g: np.ndarray, a: np.ndarray, lba: np.ndarray, uba: np.ndarray, lbx: np.ndarray,
              ubx: np.ndarray, optional: int) -> tuple[np.ndarray | None, float, str, int]:
        """Return (x or None, objective, status, sub-QPs) of min 1/2 x'Hx + g'x, lba <= Ax <= uba, lbx <= x <= ubx.

        The last `optional` variables (slacks, lower bound 0) join the QP only with a working-set row that uses them.
        """
        n_rows, nx = a.shape
        if n_rows != self._rows:
            self.active, self._rows = np.zeros(0, dtype=int), n_rows
        tol = 1e-8 * (1 + np.abs(np.where(np.isfinite(lba), lba, 0))), 1e-8 * (1 + np.abs(np.where(np.isfinite(uba), uba, 0)))
        work = np.zeros(n_rows, dtype=bool)
        work[self.active] = True
        fixed = nx - optional
        status, solves = "not solved", 0
        while True:
            rows = np.flatnonzero(work)
            used = np.flatnonzero(np.any(a[rows, fixed:] != 0, axis=0)) + fixed if len(rows) else np.zeros(0, int)
            cols = np.concatenate([np.arange(fixed), used])
            sub, status = self._solve(h[np.ix_(cols, cols)], g[cols], a[np.ix_(rows, cols)], lba[rows], uba[rows],
                                      lbx[cols], ubx[cols])
            solves += 1
            if sub is None:
                return None, np.inf, status, solves
            x = np.zeros(nx)
            x[cols] = sub
            ax = a @ x
            violated = ~work & ((ax < lba - tol[0]) | (ax > uba + tol[1]))
            if not violated.any():
                break
            work |= violated
        self.active = np.flatnonzero(work & ((ax <= lba + tol[0]) | (ax >= uba - tol[1])))
        return x, float(0.5 * x @ h @ x + g @ x), status, solves

    def _solve(self, h: np.ndarray, g: np.ndarray, a: np.ndarray, lba: np.ndarray, uba: np.ndarray, lbx: np.ndarray,
               ubx: np.ndarray) -> tuple[np.ndarray | None, str]:
        """Solve one QP, padded to a multiple of 8 variables and rows so that few solver instances are built."""
        nx, na = len(g), len(lba)
        px, pa = -(-nx // 8) * 8, -(-na // 8) * 8
        key = (px, pa)
        if key not in self._solvers:
            self._solvers[key] = self._build(px, pa)
        hp = np.eye(px)
        hp[:nx, :nx] = h
        ap = np.zeros((pa, px))
        ap[:na, :nx] = a
        pad_x, pad_a = np.zeros(px - nx), np.full(pa - na, np.inf)
        args = {"h": hp, "g": np.concatenate([g, pad_x]), "a": ap, "lba": np.concatenate([lba, -pad_a]),
                "uba": np.concatenate([uba, pad_a]), "lbx": np.concatenate([lbx, pad_x]),
                "ubx": np.concatenate([ubx, pad_x])}
        status = "not solved"
        for _ in range(2):
            solver = self._solvers[key]
            try:
                with _quiet():
                    sol = solver(**args)
                stats = solver.stats()
                status = str(stats.get("return_status", "unknown"))
                x = np.asarray(sol["x"]).reshape(-1)[:nx]
                if stats.get("success", False) and np.all(np.isfinite(x)):
                    return x, status
            except RuntimeError as exc:
                status = f"QP solver error: {exc}"
            # A failed qpOASES instance refuses every later QP ("previous QP is not solved"): build a fresh one,
            # and try once more with it in case the failure was that state, not this QP.
            self._solvers[key] = self._build(px, pa)
        return None, status

    def _build(self, nx: int, na: int) -> ca.Function:
        """Return a new dense QP solver instance for nx variables and na rows."""
        shape = {"h": ca.Sparsity.dense(nx, nx), "a": ca.Sparsity.dense(na, nx)}
        with _quiet():  # qpOASES prints its licence banner whenever an instance is built
            return ca.conic("mpc_qp", self.plugin, shape, {"print_time": False, "error_on_fail": False, **self.options})


@contextmanager
def _quiet() -> Iterator[None]:
    """Send the process's C-level stdout and stderr to /dev/null for the block.

    qpOASES prints its licence banner when an instance is built and some error traces (e.g. a failed TQ
    factorisation, after which the controller retries) whatever its print level; library code never prints.
    The block is a single solver call (milliseconds); other threads' output in that window is lost too.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
