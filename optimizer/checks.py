"""Checks made before any solve: does the twin fit the line spec, and are this solve's inputs usable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optimizer.limits import SolveLimits, Weights, solve_limits, solve_weights
from optimizer.model import Dynamics
from optimizer.result import MpcResult, MpcStatus
from optimizer.spec import MpcSettings, MpcSpec


@dataclass(frozen=True)
class SolveInputs:
    """One solve's checked inputs in the twin's order, with the limits and weights its spec gives."""

    spec: MpcSpec
    z_now: np.ndarray  # (M*nz,) ensemble latents now, member-major
    u_now: np.ndarray  # (n_mv,) setpoints in force, engineering units
    d_plan: np.ndarray  # (n_dv, N) DV forecast
    bias: np.ndarray | None  # (n_cv,) constant CV output disturbance, None without one
    band_scale: np.ndarray | None  # (K, n_cv) widening of the calibrated band per step ahead, None: as calibrated
    limits: SolveLimits
    weights: Weights


def prepare_solve(
    dynamics: Dynamics | None,
    built: MpcSpec,
    settings: MpcSettings,
    incompatibility: str | None,
    *,
    spec: MpcSpec,
    z0: np.ndarray,
    mv: Mapping[str, float],
    dv_forecast: Mapping[str, float | Sequence[float]],
    cv_bias: Mapping[str, float] | None,
    band_scale: Mapping[str, float | Sequence[float]] | None = None,
) -> SolveInputs | MpcResult:
    """Return a solve's checked inputs, or the result without proposal that says why it cannot be solved.

    `built` is the spec the controller was built for; `spec` this solve's (limits, prices, targets may differ).
    """
    n = settings.horizon
    period = dynamics.sample_period_s if dynamics else 0.0
    if incompatibility or dynamics is None:
        return MpcResult(MpcStatus.INCOMPATIBLE, f"twin is incompatible with the line: {incompatibility}", n, period)
    if spec.structure != built.structure:
        return MpcResult(
            MpcStatus.INCOMPATIBLE,
            "spec tags, objective terms or targets differ from the ones the "
            "problem was built for; build a new controller",
            n,
            period,
        )
    incompatible = check_compatible(dynamics, spec, settings)
    if incompatible:
        return MpcResult(MpcStatus.INCOMPATIBLE, "; ".join(incompatible), n, period)
    inputs = read_inputs(dynamics, n, z0, mv, dv_forecast)
    if isinstance(inputs, str):
        return MpcResult(MpcStatus.BAD_INPUT, inputs, n, period)
    z_now, u_now, d_plan = inputs
    bias = read_bias(dynamics, cv_bias)
    if isinstance(bias, str):
        return MpcResult(MpcStatus.BAD_INPUT, bias, n, period)
    scale = read_band_scale(dynamics, band_scale)
    if isinstance(scale, str):
        return MpcResult(MpcStatus.BAD_INPUT, scale, n, period)
    limits = solve_limits(dynamics, spec, settings, u_now)
    if isinstance(limits, str):
        return MpcResult(MpcStatus.INCOMPATIBLE, limits, n, period)
    weights = solve_weights(dynamics, spec, settings)
    return SolveInputs(spec, z_now, u_now, d_plan, bias, scale, limits, weights)


def check_compatible(dynamics: Dynamics | None, spec: MpcSpec, settings: MpcSettings) -> list[str]:
    """Return every reason the twin and the spec do not fit together (empty when they do)."""
    if dynamics is None:
        return ["no twin"]
    problems: list[str] = []
    for role, twin_names, spec_names in (
        ("CV", dynamics.cv, [c.name for c in spec.cvs]),
        ("MV", dynamics.mv, [m.name for m in spec.mvs]),
        ("DV", dynamics.dv, [d.name for d in spec.dvs]),
    ):
        if len(set(spec_names)) != len(spec_names):
            problems.append(f"spec lists a {role} twice: {spec_names}")
        missing, extra = sorted(set(spec_names) - set(twin_names)), sorted(set(twin_names) - set(spec_names))
        if missing or extra:
            problems.append(
                f"{role} tags differ: the line has {missing or 'no others'} the twin lacks, "
                f"the twin has {extra or 'no others'} the line lacks"
            )
    known = set(dynamics.cv) | set(dynamics.mv) | set(dynamics.dv)
    for term in spec.objective_terms:
        unknown = [t for t in term.tags if t not in known]
        if unknown or not term.tags:
            problems.append(f"objective term {term.description or term.tags} names unknown tags {unknown}")
    for target in spec.targets:
        if target.tag not in dynamics.cv:
            problems.append(f"target on {target.tag!r}, which is not a CV of the twin")
    period = spec.sample_period_s
    if period is not None and abs(period - dynamics.sample_period_s) > 1e-9 * period:
        problems.append(f"the line samples every {period:g} s but the twin steps {dynamics.sample_period_s:g} s")
    ranks = len(settings.soft_penalty_by_rank)
    for cv in spec.cvs:
        if not 1 <= cv.rank <= ranks:
            problems.append(f"CV {cv.name} has soft-limit rank {cv.rank}; settings define ranks 1..{ranks}")
    return problems


def read_inputs(
    dynamics: Dynamics,
    horizon: int,
    z0: np.ndarray,
    mv: Mapping[str, float],
    dv_forecast: Mapping[str, float | Sequence[float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """Return (z (M*nz,), u_now (n_mv,), D (n_dv, N)) in the twin's order, or why the inputs are unusable."""
    try:
        z = np.asarray(z0, dtype=float)
    except (TypeError, ValueError):
        return "latent state z0 is not numeric"
    if z.shape != (dynamics.members, dynamics.nz):
        return f"latent state z0 has shape {z.shape}, expected (members, nz) = ({dynamics.members}, {dynamics.nz})"
    if not np.all(np.isfinite(z)):
        return "latent state z0 holds NaN or inf"
    problem = _names("current MVs", mv, dynamics.mv) or _names("DV forecast", dv_forecast, dynamics.dv)
    if problem:
        return problem
    try:
        u = np.array([float(mv[name]) for name in dynamics.mv])
    except (TypeError, ValueError):
        return "current MVs must be numbers"
    if not np.all(np.isfinite(u)):
        bad = [name for name, v in zip(dynamics.mv, u, strict=True) if not np.isfinite(v)]
        return f"current MVs hold NaN or inf: {bad}"
    d = np.empty((len(dynamics.dv), horizon))
    for i, name in enumerate(dynamics.dv):
        try:
            values = np.asarray(dv_forecast[name], dtype=float).reshape(-1)
        except (TypeError, ValueError):
            return f"DV forecast of {name} is not numeric"
        if values.size not in (1, horizon):
            return f"DV forecast of {name} has {values.size} values, expected 1 (held) or {horizon} (one per step)"
        if not np.all(np.isfinite(values)):
            return f"DV forecast of {name} holds NaN or inf"
        d[i] = values
    return z.reshape(-1), u, d


def read_bias(dyn: Dynamics, cv_bias: Mapping[str, float] | None) -> np.ndarray | None | str:
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


def read_band_scale(dyn: Dynamics, band_scale: Mapping[str, float | Sequence[float]] | None) -> np.ndarray | None | str:
    """Return the band's widening (K, n_cv) in the twin's CV order (1 where not named), None if none, or why not.

    Each CV's value is one scale for every step ahead or one per step ahead (0 = now, as the twin's calibration);
    shorter lists hold their last value. Every value must be finite and >= 1: the calibrated band is never narrowed.
    A twin without a calibration has no calibrated band to widen: the scale is ignored (None).
    """
    if band_scale is None or dyn.calibration is None:
        return None
    unknown = sorted(set(band_scale) - set(dyn.cv))
    if unknown:
        return f"band scale names tags that are not CVs of the twin: {unknown}"
    try:
        given = {name: np.atleast_1d(np.asarray(v, dtype=float)) for name, v in band_scale.items()}
    except (TypeError, ValueError):
        return "band scale values must be numbers or lists of numbers"
    bad = [name for name, v in given.items() if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v) & (v >= 1))]
    if bad:
        return f"band scale must be finite numbers >= 1 (a band is never narrowed), one or one per step ahead: {bad}"
    steps = dyn.calibration.scale.shape[0]
    out = np.ones((steps, len(dyn.cv)))
    for i, name in enumerate(dyn.cv):
        if name in given:
            v = given[name]
            out[:, i] = v[np.minimum(np.arange(steps), v.size - 1)]
    return out


def _names(what: str, given: Mapping[str, object], expected: tuple[str, ...]) -> str:
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or extra:
        return f"{what} do not match the twin's tags: missing {missing}, unexpected {extra}"
    return ""
