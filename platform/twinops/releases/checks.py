"""Re-check a release before each write, independently of the optimizer: '' when the write may go, else why not.

Before the first write and before every later one: not superseded (and, before the first, not expired); the line in
advisory mode and the PLC in remote mode without its fallback; before the first write the MVs where the proposal
started; every setpoint inside the limits, move and ramp of the *current* spec version; the signatures still cover
the proposal's content; the data fresh; the twin's OOD score under its threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from twinops.lines.models import Line
from twinops.modeling.selectors import twin_promoted
from twinops.recommendations import conf as rec_conf
from twinops.recommendations.models import Recommendation, Signature
from twinops.recommendations.mpc_cache import twin_cached
from twinops.recommendations.selectors import proposal_content_sha256, recent_window
from twinops.releases import conf
from twinops.releases.models import Release
from twinops.releases.selectors import approved_newer_than
from twinops.telemetry.selectors import tag_freshness
from twins import CheckpointError

EPS = 1e-9  # relative slack on limit comparisons: a plan exactly at a limit is inside it


@dataclass(frozen=True)
class PlcReading:
    """What the PLC reported just before a write."""

    mode: str
    fallback_active: bool
    mv: dict[str, float]  # current setpoint of each MV of the plan


def plan_step(rec: Recommendation, step: int) -> dict[str, float]:
    """Return the approved setpoint of each MV at a step."""
    return {mv: float(values[step]) for mv, values in (rec.approved_plan or {})["mv_plan"].items()}


def plan_steps(rec: Recommendation) -> int:
    """Return the number of steps of an approved plan."""
    return min((len(v) for v in (rec.approved_plan or {}).get("mv_plan", {}).values()), default=0)


def release_recheck(*, release: Release, step: int, plc: PlcReading, remote_value: str, now: datetime) -> str:
    """Return why step `step` of the release must not be written now ('' when every check passes)."""
    rec = Recommendation.objects.select_related("line").get(pk=release.recommendation_id)
    line = Line.objects.get(pk=rec.line_id)
    plan = rec.approved_plan or {}
    newer = approved_newer_than(rec=rec)
    if newer is not None:
        return f"superseded by proposal {newer.pk}, approved later"
    if step == 0 and now >= rec.expires_at:
        return f"the proposal expired at {rec.expires_at.isoformat()} before its release"
    if line.mode != Line.Mode.ADVISORY:
        return f"the line is in {line.mode} mode, not advisory"
    if plc.mode != remote_value:
        return f"the PLC is in {plc.mode} mode, not {remote_value}: it takes no remote setpoints"
    if plc.fallback_active:
        return "the PLC has applied its safe setpoints (fallback active)"
    targets = plan_step(rec, step)
    spec = line.current_spec
    mvs = {t["name"]: t for t in (spec.document.get("tags") or []) if t.get("role") == "MV"} if spec else {}
    if step == 0:
        moved = _plant_moved(plan.get("start_mv") or {}, plc.mv, mvs)
        if moved:
            return f"the plant moved since the proposal: {moved}"
    problem = _limits_problem(targets, plc.mv, mvs, spec_version=spec.version if spec else None, period_s=_period(rec))
    if problem:
        return problem
    problem = _signature_problem(rec)
    if problem:
        return problem
    return _data_problem(line, targets, now=now)


def _period(rec: Recommendation) -> float:
    return float((rec.approved_plan or {}).get("sample_period_s") or rec.line.sample_period_s)


def _span(tag: dict[str, Any]) -> float:
    limits = tag.get("limits") or {}
    low, high = limits.get("low"), limits.get("high")
    if low is None or high is None:
        low, high = tag["physical_range"]
    return float(high) - float(low)


def _plant_moved(start: dict[str, float], now: dict[str, float], mvs: dict[str, dict[str, Any]]) -> str:
    moved = []
    for name, value in start.items():
        tolerance = conf.start_tolerance() * _span(mvs[name]) if name in mvs else 0.0
        if name not in now or not abs(now[name] - float(value)) <= tolerance:
            moved.append(
                f"{name} reads {now.get(name)!r} at the PLC, the proposal started from {value:g} (± {tolerance:g})"
            )
    return "; ".join(moved)


def _limits_problem(
    targets: dict[str, float],
    current: dict[str, float],
    mvs: dict[str, dict[str, Any]],
    *,
    spec_version: int | None,
    period_s: float,
) -> str:
    """Check each setpoint against the current spec's operating limits, largest move and ramp rate."""
    problems = []
    where = f"spec v{spec_version}"
    for name, value in targets.items():
        tag = mvs.get(name)
        if tag is None:
            problems.append(f"{name} is no MV of the line's current {where}")
            continue
        limits = tag.get("limits") or {}
        low, high = limits.get("low"), limits.get("high")
        if (
            not math.isfinite(value)
            or (low is not None and value < low - EPS * max(1.0, abs(low)))
            or (high is not None and value > high + EPS * max(1.0, abs(high)))
        ):
            problems.append(f"{name} = {value:g} lies outside its limits [{low}, {high}] in {where}")
            continue
        move = abs(value - current.get(name, value))
        step_max = tag.get("max_move_per_step")
        if step_max is not None and move > step_max * (1 + EPS) + EPS:
            problems.append(f"{name} would move {move:g} in one step, more than its max move {step_max:g} in {where}")
        ramp = tag.get("ramp_rate_per_min")
        if ramp is not None and move > ramp * period_s / 60.0 * (1 + EPS) + EPS:
            problems.append(
                f"{name} would move {move:g} in {period_s:g} s, faster than its ramp {ramp:g}/min in {where}"
            )
    return "; ".join(problems)


def _signature_problem(rec: Recommendation) -> str:
    plan = rec.approved_plan or {}
    approvals = [s for s in rec.signatures.all() if s.meaning == Signature.Meaning.APPROVED]
    if rec.status != Recommendation.Status.APPROVED or not approvals:
        return "the proposal carries no signed approval"
    now_sha = proposal_content_sha256(rec, scale=float(plan.get("scale", 1.0)))
    signed = {plan.get("content_sha256"), *(s.content_sha256 for s in approvals)}
    if signed != {now_sha}:
        return (
            f"the proposal's content changed since it was signed (now {now_sha[:12]}…, signed "
            f"{', '.join(sorted(str(s)[:12] + '…' for s in signed))}): the signature no longer applies"
        )
    return ""


def _data_problem(line: Line, targets: dict[str, float], *, now: datetime) -> str:
    """Check the twin's tags are fresh and its OOD score at the current state with these setpoints is acceptable."""
    version = twin_promoted(line=line)
    if version is None:
        return "the line has no promoted twin to re-check the proposal with"
    try:
        twin = twin_cached(version=version)
    except CheckpointError as exc:
        return f"twin v{version.version} cannot be loaded: {exc}"
    names = (*twin.cv_names, *twin.mv_names, *twin.dv_names)
    fresh = tag_freshness(line=line, now=now)
    stale = [
        fresh[n].problem if n in fresh else f"{n} is no active tag"
        for n in names
        if not (n in fresh and fresh[n].fresh)
    ]
    if stale:
        return "data are not fresh: " + "; ".join(stale)
    end = max(fresh[n].sample.good_ts or now for n in names)  # every tag is fresh: each has a good sample
    window = recent_window(line=line, twin=twin, last=end, rows=twin.state_rows)
    if len(window.dataset) == 0:
        return "no samples in the twin's window"
    z = twin.encode(window.dataset, np.array([len(window.dataset) - 1]))  # (M, 1, nz)
    u = np.array([[targets.get(n, fresh[n].sample.good_value or 0.0) for n in twin.mv_names]])  # (1, n_mv)
    d = np.array([[fresh[n].sample.good_value or 0.0 for n in twin.dv_names]]).reshape(1, len(twin.dv_names))
    score = float(twin.ood_score(z, u, d)[0])
    limit = rec_conf.max_ood()
    if not score <= limit:
        return f"the twin's OOD score {score:.2f} exceeds {limit:g} at the plant's state with these setpoints"
    return ""
