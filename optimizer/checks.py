"""Checks made before any solve: does the twin fit the line spec, and are this solve's inputs usable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optimizer.model import Dynamics
from optimizer.spec import MpcSettings, MpcSpec


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
            problems.append(f"{role} tags differ: the line has {missing or 'no others'} the twin lacks, "
                            f"the twin has {extra or 'no others'} the line lacks")
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
    dynamics: Dynamics, horizon: int, z0: np.ndarray, mv: Mapping[str, float],
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


def _names(what: str, given: Mapping[str, object], expected: tuple[str, ...]) -> str:
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or extra:
        return f"{what} do not match the twin's tags: missing {missing}, unexpected {extra}"
    return ""
