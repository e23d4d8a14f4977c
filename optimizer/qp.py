"""A dense convex QP with a QP solver from the casadi wheel, solved on a working set of its rows."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import casadi as ca
import numpy as np

from optimizer.spec import MpcSettings


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

    def solve(
        self,
        h: np.ndarray,
        g: np.ndarray,
        a: np.ndarray,
        lba: np.ndarray,
        uba: np.ndarray,
        lbx: np.ndarray,
        ubx: np.ndarray,
        optional: int,
    ) -> tuple[np.ndarray | None, float, str, int]:
        """Return (x or None, objective, status, sub-QPs) of min 1/2 x'Hx + g'x, lba <= Ax <= uba, lbx <= x <= ubx.

        The last `optional` variables (slacks, lower bound 0) join the QP only with a working-set row that uses them.
        """
        n_rows, nx = a.shape
        if n_rows != self._rows:
            self.active, self._rows = np.zeros(0, dtype=int), n_rows
        tol = (
            1e-8 * (1 + np.abs(np.where(np.isfinite(lba), lba, 0))),
            1e-8 * (1 + np.abs(np.where(np.isfinite(uba), uba, 0))),
        )
        work = np.zeros(n_rows, dtype=bool)
        work[self.active] = True
        fixed = nx - optional
        status, solves = "not solved", 0
        while True:
            rows = np.flatnonzero(work)
            used = np.flatnonzero(np.any(a[rows, fixed:] != 0, axis=0)) + fixed if len(rows) else np.zeros(0, int)
            cols = np.concatenate([np.arange(fixed), used])
            sub, status = self._solve(
                h[np.ix_(cols, cols)], g[cols], a[np.ix_(rows, cols)], lba[rows], uba[rows], lbx[cols], ubx[cols]
            )
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

    def _solve(
        self,
        h: np.ndarray,
        g: np.ndarray,
        a: np.ndarray,
        lba: np.ndarray,
        uba: np.ndarray,
        lbx: np.ndarray,
        ubx: np.ndarray,
    ) -> tuple[np.ndarray | None, str]:
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
        args = {
            "h": hp,
            "g": np.concatenate([g, pad_x]),
            "a": ap,
            "lba": np.concatenate([lba, -pad_a]),
            "uba": np.concatenate([uba, pad_a]),
            "lbx": np.concatenate([lbx, pad_x]),
            "ubx": np.concatenate([ubx, pad_x]),
        }
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


def qp_options(settings: MpcSettings) -> dict[str, object]:
    """Return the options of the settings' QP plugin: quiet, tight defaults overridden by settings.qp_options."""
    defaults: dict[str, dict[str, object]] = {
        "qpoases": {"printLevel": "none", "sparse": False, "error_on_fail": False},
        "osqp": {"osqp": {"verbose": False, "eps_abs": 1e-8, "eps_rel": 1e-8, "max_iter": 20000}},
        "proxqp": {"proxqp": {"verbose": False, "backend": "dense"}},
        "daqp": {},
        "qrqp": {"print_iter": False, "print_header": False},
    }
    return {**defaults.get(settings.qp_solver, {}), **settings.qp_options}
