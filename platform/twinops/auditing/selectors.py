"""Read the decision chain of every proposal in a time range: data window → twin → proposal → signatures → release → outcome."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from twinops.recommendations.models import Recommendation
from twinops.recommendations.selectors import recommendations_between
from twinops.releases.models import Release
from twinops.releases.selectors import releases_between

# decisions.csv's columns, in order (docs/audit.md explains each)
COLUMNS = (
    "proposal_id",
    "line",
    "created_at",
    "status",
    "status_reason",
    "window_start",
    "window_end",
    "inputs_sha256",
    "twin_version",
    "twin_checkpoint_sha256",
    "twin_data_start",
    "twin_data_end",
    "twin_data_sha256",
    "spec_version",
    "spec_sha256",
    "solver_status",
    "expected_gain_per_h",
    "plan",
    "signatures",
    "decided_at",
    "release_status",
    "release_steps_done",
    "release_writes",
    "outcome_compared_with",
    "outcome_coverage",
    "outcome_predicted_gain_per_h",
    "outcome_realized_gain_per_h",
)


@dataclass(frozen=True)
class Decision:
    """One proposal and its chain, as decisions.csv and the report show it."""

    cells: dict[str, Any]  # by COLUMNS name; None where the link does not exist (yet)
    mv_plan: dict[str, list[float]] = field(default_factory=dict)  # planned setpoints per MV, for the report's plots


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plan_summary(plan: dict[str, list[float]]) -> str:
    return "; ".join(f"{mv}: {vals[0]:g} → {vals[-1]:g} over {len(vals)} steps" for mv, vals in plan.items() if vals)


def _signatures(rec: Recommendation) -> str:
    return "; ".join(
        f"{s.meaning} by {s.username} ({s.full_name}) at {s.signed_at.isoformat()}, scale {s.scale:g}, "
        f"content sha256 {s.content_sha256}" + (f", reason: {s.reason}" if s.reason else "")
        for s in rec.signatures.all()
    )


def _writes(release: Release) -> str:
    return "; ".join(
        f"step {w.step} {w.tag}={w.value:g} read back "
        + ("-" if w.read_back is None else f"{w.read_back:g}")
        + f" {w.status}"
        + (f" at {w.written_at.isoformat()}" if w.written_at else "")
        for w in sorted(release.writes.all(), key=lambda w: (w.step, w.tag))
    )


def _decision(rec: Recommendation, release: Release | None) -> Decision:
    twin, spec = rec.twin_version, rec.spec_version
    outcome = getattr(rec, "outcome", None)
    raw_plan = rec.plan.get("mv_plan") or {}
    plan = {str(k): [float(v) for v in vals if v is not None] for k, vals in raw_plan.items()}
    cells: dict[str, Any] = {
        "proposal_id": rec.pk,
        "line": rec.line.key,
        "created_at": _iso(rec.created_at),
        "status": rec.status,
        "status_reason": rec.reason,
        "window_start": _iso(rec.window_start),
        "window_end": _iso(rec.window_end),
        "inputs_sha256": rec.inputs_sha256,
        "twin_version": twin.version if twin else None,
        "twin_checkpoint_sha256": twin.checkpoint_sha256 if twin else None,
        "twin_data_start": _iso(twin.data_start) if twin else None,
        "twin_data_end": _iso(twin.data_end) if twin else None,
        "twin_data_sha256": twin.data_sha256 if twin else None,
        "spec_version": spec.version if spec else None,
        "spec_sha256": spec.sha256 if spec else None,
        "solver_status": rec.solver_status,
        "expected_gain_per_h": rec.expected_gain,
        "plan": _plan_summary(plan),
        "signatures": _signatures(rec),
        "decided_at": _iso(rec.decided_at),
        "release_status": release.status if release else None,
        "release_steps_done": f"{release.steps_done}/{release.steps}" if release else None,
        "release_writes": _writes(release) if release else None,
        "outcome_compared_with": outcome.compared_with if outcome else None,
        "outcome_coverage": outcome.coverage if outcome else None,
        "outcome_predicted_gain_per_h": outcome.predicted_gain_per_h if outcome else None,
        "outcome_realized_gain_per_h": outcome.realized_gain_per_h if outcome else None,
    }
    return Decision(cells=cells, mv_plan=plan)


def decisions_between(
    *, start: datetime | None, end: datetime | None, line_key: str | None = None
) -> Iterator[Decision]:
    """Yield each proposal made in [start, end) (of one line if given) with its chain, oldest first."""
    releases = releases_between(start=start, end=end, line_key=line_key)
    for rec in recommendations_between(start=start, end=end, line_key=line_key).iterator(chunk_size=500):
        yield _decision(rec, releases.get(rec.pk))
