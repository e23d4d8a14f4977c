"""A solve's result from its plan on the exact twin: the proposal with predictions and gain, or why there is none."""

from __future__ import annotations

import numpy as np

from optimizer.bands import plan_band
from optimizer.limits import CvLimits, SolveLimits, soft_slack
from optimizer.model import Dynamics
from optimizer.result import MpcResult, MpcStatus
from optimizer.spec import MpcSettings, MpcSpec

HARD_LIMITS_UNMET = "the hard limits (MV, move, safety) cannot all be met"


def proposal(
    dyn: Dynamics,
    settings: MpcSettings,
    limits: SolveLimits,
    *,
    u: np.ndarray,
    u_now: np.ndarray,
    d_plan: np.ndarray,
    y: np.ndarray,
    var_n: np.ndarray,
    value: float,
    y_hold: np.ndarray,
    value_hold: float,
    raw: str,
    elapsed: float,
    iterations: int,
    linearisations: int,
    held: CvLimits | None = None,
    fallback: str | None = None,
    headline: str = "",
    ood: np.ndarray | None = None,
    gain_spread: float | None = None,
    band_scale: np.ndarray | None = None,
) -> MpcResult:
    """Return the proposal of plan u (n_mv, N): predictions with bands, gain versus hold, active constraints.

    held: the soft CV limits the plan was held inside (backed off), for the active constraints; fallback and
    headline: a proposal that is not a converged optimum (MpcResult.fallback) and what it is, in words; ood (N,)
    the twin's OOD score along the plan, if it has OOD statistics; band_scale (K, n_cv) how much dyn's calibration
    was widened by recent errors (already in it), for the result to say.

    y, var_n (n_cv, N): the plan's ensemble-mean CVs and sample variance over members in CV stds^2; y_hold (n_cv, N)
    the mean when holding the current setpoints; value and value_hold their economic value, currency per hour. The
    band is the twin's calibrated interval (optimizer.bands), or band_k raw spreads when the export has none.
    """
    n = settings.horizon
    half = plan_band(dyn.calibration, dyn.members, len(dyn.cv), n, settings.band_k).half(var_n, dyn.cv_std)
    lo, hi = y - half, y + half
    active = active_constraints(dyn, settings, limits if held is None else _with_cv(limits, held), u, u_now, y, var_n)
    slack = soft_slack(y, limits.cv, dyn.cv_std) * dyn.cv_std[:, None]
    soft = [
        f"{c} by up to {slack[i].max():.4g}"
        for i, c in enumerate(dyn.cv)
        if slack[i].max() > 1e-6 * (1 + dyn.cv_std[i])
    ]
    message = headline or f"optimal ({raw}, {linearisations} linearisations)"
    if held is not None and np.any(held.high < limits.cv.high) | np.any(held.low > limits.cv.low):
        with np.errstate(invalid="ignore"):  # an unbounded side: inf - inf, dropped below as not finite
            backoff = np.maximum(limits.cv.high - held.high, held.low - limits.cv.low)
        message += "; soft CV limits held back by the calibrated one-step band: " + ", ".join(
            f"{c} {backoff[i]:.3g}" for i, c in enumerate(dyn.cv) if np.isfinite(backoff[i]) and backoff[i] > 0
        )
    if soft:
        message += "; planned CVs outside their soft operating limits: " + ", ".join(soft)
    d_out = [
        name
        for i, name in enumerate(dyn.dv)
        if np.any(d_plan[i] < dyn.train_dv_min[i]) or np.any(d_plan[i] > dyn.train_dv_max[i])
    ]
    if d_out:
        message += "; DV forecast outside the twin's training range: " + ", ".join(d_out)
    widened = _widened(dyn, band_scale, n)
    if widened:
        message += "; bands and safety margins widened by the twin's recent prediction errors: " + ", ".join(
            f"{c} ×{s:.2f}" for c, s in widened.items()
        )
    if dyn.calibration is None and dyn.members > 1:
        message += (
            f"; bands are ± {settings.band_k:g} and safety margins ± {settings.safety_spread_k:g} raw ensemble spreads:"
            " the twin export has no interval calibration"
        )

    def traj(matrix: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
        return {name: tuple(float(v) for v in matrix[i]) for i, name in enumerate(names)}

    return MpcResult(
        MpcStatus.OPTIMAL,
        message,
        n,
        dyn.sample_period_s,
        first_setpoint={name: float(u[i, 0]) for i, name in enumerate(dyn.mv)},
        first_move={name: float(u[i, 0] - u_now[i]) for i, name in enumerate(dyn.mv)},
        mv_plan=traj(u, dyn.mv),
        cv_mean=traj(y, dyn.cv),
        cv_lo=traj(lo, dyn.cv),
        cv_hi=traj(hi, dyn.cv),
        cv_hold_mean=traj(y_hold, dyn.cv),
        objective_plan=value,
        objective_hold=value_hold,
        objective_gain=value - value_hold,
        objective_gain_spread=gain_spread,
        active_constraints=active,
        solve_time_s=elapsed,
        iterations=iterations,
        fallback=fallback,
        plan_ood=None if ood is None else tuple(float(v) for v in ood),
        plan_ood_max=None if ood is None else float(np.max(ood)),
        plan_ood_step=None if ood is None else int(np.argmax(ood)) + 1,
        band_coverage=dyn.calibration.coverage if dyn.calibration is not None else None,
        band_scale=widened or None,
    )


def _widened(dyn: Dynamics, band_scale: np.ndarray | None, n: int) -> dict[str, float]:
    """Return each widened CV's largest scale over the plan's steps ahead (1..n), by name; empty when none is."""
    if band_scale is None or dyn.calibration is None:
        return {}
    rows = np.minimum(np.arange(1, n + 1), band_scale.shape[0] - 1)
    top = band_scale[rows].max(axis=0)
    return {c: float(top[i]) for i, c in enumerate(dyn.cv) if top[i] > 1.0 + 1e-9}


def _with_cv(limits: SolveLimits, cv: CvLimits) -> SolveLimits:
    return SolveLimits(limits.mv, cv, limits.trust_low, limits.trust_high)


def no_proposal(
    dyn: Dynamics,
    spec: MpcSpec,
    settings: MpcSettings,
    *,
    status: MpcStatus,
    raw: str,
    solver: str,
    budget: str,
    y_now: np.ndarray,
    elapsed: float,
    iterations: int,
) -> MpcResult:
    """Return a result without proposal that says why: the solver's status, and any CV already beyond safety.

    y_now (n_cv,): the ensemble-mean CVs the twin reads now (with the CV bias); budget: the solve's limits in words.
    """
    why = {
        MpcStatus.TIMEOUT: f"solver budget exhausted ({budget})",
        MpcStatus.NOT_CONVERGED: "no convergence within the linearisation budget, inside the time budget",
        MpcStatus.INFEASIBLE: HARD_LIMITS_UNMET,
    }.get(status, "solver failed")
    note = safety_note(dyn, spec, y_now)
    if note and status is MpcStatus.SOLVER_FAILED:
        status, why = MpcStatus.INFEASIBLE, HARD_LIMITS_UNMET
    message = f"{why}: {solver} returned {raw}; no proposal" + note
    return MpcResult(
        status, message, settings.horizon, dyn.sample_period_s, solve_time_s=elapsed, iterations=iterations
    )


def safety_note(dyn: Dynamics, spec: MpcSpec, y_now: np.ndarray) -> str:
    """Return a note naming CVs whose current prediction y_now (n_cv,) is already beyond a safety limit."""
    beyond = []
    for c in spec.cvs:
        v = y_now[dyn.cv.index(c.name)]
        if c.safety.low is not None and v < c.safety.low:
            beyond.append(f"{c.name}={v:.4g} is below its safety low limit {c.safety.low:g}")
        if c.safety.high is not None and v > c.safety.high:
            beyond.append(f"{c.name}={v:.4g} is above its safety high limit {c.safety.high:g}")
    return (
        (
            "; the twin puts the line beyond a hard safety limit now ("
            + ", ".join(beyond)
            + ") and no plan within the MV and move limits brings it back by the first step"
        )
        if beyond
        else ""
    )


def hard_violation(
    settings: MpcSettings,
    dyn: Dynamics,
    limits: SolveLimits,
    u: np.ndarray,
    u_now: np.ndarray,
    y: np.ndarray,
    var_n: np.ndarray,
) -> str:
    """Return what hard limit plan u breaks when re-simulated (empty if none): never pass on a half result.

    Safety limits hold for the mean y (n_cv, N) -/+ the safety half-width of ensemble variances var_n (n_cv, N).
    """
    mv, cv, tol = limits.mv, limits.cv, 1e-6
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(var_n))):
        return "the twin's prediction of the plan holds NaN or inf"
    if np.any(u < mv.low - tol * (1 + np.abs(u))) or np.any(u > mv.high + tol * (1 + np.abs(u))):
        return "the plan leaves the MV limits"
    moves = np.abs(np.diff(np.hstack([u_now[:, None], u]), axis=1))
    if np.any(moves > mv.max_move[:, None] * (1 + tol) + tol):
        return "the plan breaks a move limit"
    half, scale = safety_half(dyn, settings, var_n), 1e-5 * dyn.cv_std[:, None]
    if np.any(np.asarray(y - half) < cv.safety_low[:, None] - scale) or np.any(
        np.asarray(y + half) > cv.safety_high[:, None] + scale
    ):
        return "the simulated plan crosses a CV safety limit"
    return ""


def active_constraints(
    dyn: Dynamics,
    settings: MpcSettings,
    limits: SolveLimits,
    u: np.ndarray,
    u_now: np.ndarray,
    y: np.ndarray,
    var_n: np.ndarray,
) -> tuple[str, ...]:
    """Return the names of the constraints at (or, for soft CV limits, beyond) their bound somewhere in the plan."""
    tol, mv, cv = settings.active_tolerance, limits.mv, limits.cv
    names: list[str] = []

    def near(value: np.ndarray, bound: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
        return np.isfinite(bound) & (np.abs(value - bound) <= tol * (scale + np.abs(bound)))

    moves = np.diff(np.hstack([u_now[:, None], u]), axis=1)
    for i, name in enumerate(dyn.mv):
        if near(u[i], mv.low[i], dyn.mv_std[i]).any():
            names.append(f"{name}:{'trust_low' if limits.trust_low[i] else 'mv_low'}")
        if near(u[i], mv.high[i], dyn.mv_std[i]).any():
            names.append(f"{name}:{'trust_high' if limits.trust_high[i] else 'mv_high'}")
        if np.isfinite(mv.max_move[i]) and near(np.abs(moves[i]), mv.max_move[i], dyn.mv_std[i]).any():
            names.append(f"{name}:max_move")
    half = safety_half(dyn, settings, var_n)
    for i, name in enumerate(dyn.cv):
        if (near(y[i], cv.low[i], dyn.cv_std[i]) | (y[i] < cv.low[i])).any():
            names.append(f"{name}:cv_low")
        if (near(y[i], cv.high[i], dyn.cv_std[i]) | (y[i] > cv.high[i])).any():
            names.append(f"{name}:cv_high")
        if near(y[i] - half[i], cv.safety_low[i], dyn.cv_std[i]).any():
            names.append(f"{name}:safety_low")
        if near(y[i] + half[i], cv.safety_high[i], dyn.cv_std[i]).any():
            names.append(f"{name}:safety_high")
    return tuple(names)


def safety_half(dyn: Dynamics, settings: MpcSettings, var_n: np.ndarray) -> np.ndarray:
    """Return the safety half-width (n_cv, N) of ensemble variances var_n: calibrated, or safety_spread_k spreads."""
    band = plan_band(dyn.calibration, dyn.members, len(dyn.cv), var_n.shape[1], settings.safety_spread_k)
    return band.half(var_n, dyn.cv_std)
