"""Read recommendations, and the line data a recommendation starts from: the recent window in the twin's tag order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db.models import QuerySet

from twinops.lines.models import Line
from twinops.lines.selectors import line_ids_proposing
from twinops.modeling.selectors import twin_line_ids, twin_promoted
from twinops.recommendations.models import Outcome, Recommendation
from twinops.telemetry.selectors import training_window
from twins import Twin, TwinDataset


def recommendations_for_line(*, line: Line, limit: int = 50) -> list[Recommendation]:
    """Return a line's most recent recommendations, newest first."""
    rows: QuerySet[Recommendation] = Recommendation.objects.filter(line=line).select_related("twin_version")
    return list(rows.defer("twin_version__checkpoint", "twin_version__preview").order_by("-created_at", "-id")[:limit])


def recommendation_get(*, line: Line, pk: int) -> Recommendation:
    """Return one recommendation of a line; raise Recommendation.DoesNotExist if there is none."""
    return Recommendation.objects.select_related("line").get(line=line, pk=pk)


def recommendation_by_id(*, pk: int) -> Recommendation:
    """Return one recommendation by id with its line; raise Recommendation.DoesNotExist if there is none."""
    return Recommendation.objects.select_related("line", "twin_version").defer("twin_version__checkpoint").get(pk=pk)


def recommendation_last_approved(*, line: Line, before: Recommendation) -> Recommendation | None:
    """Return the line's newest approved proposal made before `before`, or None."""
    rows = Recommendation.objects.filter(
        line=line, status=Recommendation.Status.APPROVED, created_at__lt=before.created_at
    )
    return rows.select_related("spec_version", "twin_version").defer("twin_version__checkpoint").first()


@dataclass(frozen=True)
class BiasEstimate:
    """A stored proposal's filtered CV bias and when each CV's estimate last took a measurement."""

    recommendation_id: int
    value: dict[str, float]  # CV name -> filtered bias, engineering units
    updated_at: dict[str, datetime]  # CV name -> time of the last sample in the estimate


def cv_bias_last(*, line: Line, twin_version_id: int, before: datetime) -> BiasEstimate | None:
    """Return the newest filtered CV bias stored with the line's proposals of this twin up to `before`, or None."""
    row = (
        Recommendation.objects.filter(
            line=line, twin_version_id=twin_version_id, window_end__lte=before, inputs__has_key="cv_bias_filter"
        )
        .order_by("-window_end", "-id")
        .values("pk", "inputs__cv_bias", "inputs__cv_bias_filter__updated_at")
        .first()
    )
    if row is None:
        return None
    value, updated = row["inputs__cv_bias"] or {}, row["inputs__cv_bias_filter__updated_at"] or {}
    return BiasEstimate(
        recommendation_id=row["pk"],
        value={n: float(v) for n, v in value.items() if n in updated},
        updated_at={n: datetime.fromisoformat(t) for n, t in updated.items()},
    )


def recommendation_in_slot(*, line: Line, slot: datetime) -> Recommendation | None:
    """Return the recommendation already made for a line in a time slot, or None."""
    return Recommendation.objects.filter(line=line, slot=slot).first()


@dataclass(frozen=True)
class RecentWindow:
    """The rows the twin's encoder reads to infer the current state, in the twin's tag order."""

    dataset: TwinDataset
    start: datetime
    end: datetime


def recent_window(*, line: Line, twin: Twin, last: datetime, rows: int) -> RecentWindow:
    """Load `rows` sample periods of a line, the last one starting at `last`, as a TwinDataset in the twin's tag order."""
    period = float(line.sample_period_s)
    start = last - timedelta(seconds=period * (rows - 1))
    # Buckets are [start + k·period, start + (k + 1)·period): the newest sample opens the last one, which ends just
    # after it, so samples stored later (newer than `last`) never change the window and its hash stays reproducible.
    window = training_window(
        line=line,
        start=start,
        end=last + timedelta(microseconds=1),
        tags=[*twin.cv_names, *twin.mv_names, *twin.dv_names],
    )
    values = np.asarray(window.values, dtype=np.float64)  # (T, n_tags)
    mask = np.asarray(window.mask, dtype=bool)  # (T, n_tags), True = good
    column = {str(name): i for i, name in enumerate(window.tags)}

    def part(names: tuple[str, ...]) -> dict[str, Any]:
        missing = [n for n in names if n not in column]
        if missing:
            raise KeyError(f"the line's telemetry has no tag {missing}")
        idx = [column[n] for n in names]
        return {"values": values[:, idx], "mask": mask[:, idx]}

    cv, mv, dv = part(twin.cv_names), part(twin.mv_names), part(twin.dv_names)
    dataset = TwinDataset.from_arrays(
        cv=cv["values"],
        cv_mask=cv["mask"],
        cv_names=twin.cv_names,
        mv=mv["values"],
        mv_mask=mv["mask"],
        mv_names=twin.mv_names,
        dv=dv["values"] if twin.dv_names else None,
        dv_mask=dv["mask"] if twin.dv_names else None,
        dv_names=twin.dv_names,
        sample_period_s=period,
    )
    stamps = list(window.timestamps)
    return RecentWindow(dataset=dataset, start=stamps[0] if stamps else start, end=stamps[-1] if stamps else last)


def lines_to_recommend() -> list[int]:
    """Return the ids of lines not switched off that have ever had a twin (without one there is nothing to propose)."""
    proposing = line_ids_proposing()
    return [pk for pk in twin_line_ids() if pk in proposing]


SIGNED_TAG_FIELDS = (
    "limits",
    "safety_limits",
    "max_move_per_step",
    "ramp_rate_per_min",
    "dual_approval_above",
    "opcua_node",
)


def plan_scaled(rec: Recommendation, *, scale: float) -> dict[str, list[float]]:
    """Return the proposal's MV plan moved `scale` of the way from the current setpoints (1: as proposed)."""
    start = rec.inputs.get("current_mv") or {}
    plan = rec.plan.get("mv_plan") or {}
    if scale == 1.0:
        return {mv: [float(v) for v in steps] for mv, steps in plan.items()}
    return {mv: [start[mv] + scale * (float(v) - start[mv]) for v in steps] for mv, steps in plan.items()}


def proposal_content(rec: Recommendation, *, scale: float) -> dict[str, Any]:
    """Return what a signature on this proposal covers: the plan, the limits, the spec and twin versions in force.

    The spec and twin are the line's current ones, so that when either changes after signing, the content (and its
    hash) changes and the signature no longer applies.
    """
    line = rec.line
    spec = line.current_spec
    twin = twin_promoted(line=line)
    tags = (spec.document.get("tags") or []) if spec is not None else []
    return {
        "recommendation": rec.pk,
        "line": line.key,
        "slot": rec.slot.isoformat(),
        "inputs_sha256": rec.inputs_sha256,
        "scale": float(scale),
        "start_mv": rec.inputs.get("current_mv") or {},
        "mv_plan": plan_scaled(rec, scale=scale),
        "limits": {t["name"]: {f: t[f] for f in SIGNED_TAG_FIELDS if f in t} for t in tags},
        "spec_version": None if spec is None else {"id": spec.pk, "version": spec.version, "sha256": spec.sha256},
        "twin_version": None
        if twin is None
        else {"id": twin.pk, "version": twin.version, "checkpoint_sha256": twin.checkpoint_sha256},
    }


def proposal_content_sha256(rec: Recommendation, *, scale: float) -> str:
    """Return the SHA-256 of the proposal's content as a signature covers it (canonical JSON, UTF-8)."""
    text = json.dumps(
        proposal_content(rec, scale=scale), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def dual_approval_moves(rec: Recommendation, *, scale: float) -> dict[str, tuple[float, float]]:
    """Return, per MV whose spec sets `dual_approval_above`, (largest move from now over the plan, the threshold)."""
    spec = rec.line.current_spec
    start = rec.inputs.get("current_mv") or {}
    plan = plan_scaled(rec, scale=scale)
    out: dict[str, tuple[float, float]] = {}
    for tag in (spec.document.get("tags") or []) if spec is not None else []:
        name, above = tag["name"], tag.get("dual_approval_above")
        if above is not None and name in plan:
            out[name] = (max((abs(v - start[name]) for v in plan[name]), default=0.0), float(above))
    return out


def signatures_needed(rec: Recommendation, *, scale: float) -> int:
    """Return how many approvals by different engineers the proposal needs: 2 when a move exceeds its threshold."""
    return 2 if any(move > above for move, above in dual_approval_moves(rec, scale=scale).values()) else 1


# --- outcomes -------------------------------------------------------------------------------------------------------
OUTCOME_STATUSES = ("shadow", "approved")  # proposals whose outcome is recorded (approved: released, or being released)


def band_words(result: dict[str, Any], settings: dict[str, Any]) -> str:
    """Say what a proposal's CV band is: the twin's calibrated interval, or (older twins) a multiple of the spread."""
    coverage = result.get("band_coverage")
    if coverage is not None:
        widened = result.get("band_scale") or {}
        if widened:  # which CVs and by how much: the page's "Band" line; a chart title has room for the largest only
            most = max(float(s) for s in widened.values())
            return (
                f"the twin's calibrated {float(coverage):.0%} interval, widened up to ×{most:.2f} by its recent errors"
            )
        return f"the twin's calibrated {float(coverage):.0%} interval"
    return f"± {float(settings.get('mpc', {}).get('band_k', 2.0)):g}× ensemble spread"


def release_marks(*, rec: Recommendation) -> list[datetime]:
    """Return when the proposal's plan reached the plant: its first step's PLC write, read back (none if it never did).

    The releases app records it (`services.recommendation_released`); it starts the outcome's horizon.
    """
    return [rec.released_at] if rec.released_at else []


def outcome_candidates(*, before: datetime, limit: int = 200) -> list[Recommendation]:
    """Return shadow or approved proposals made before `before` that have no outcome yet, oldest first."""
    rows = Recommendation.objects.filter(
        status__in=OUTCOME_STATUSES, outcome__isnull=True, created_at__lte=before, result__isnull=False
    ).select_related("line", "spec_version")
    return list(rows.order_by("created_at", "id")[:limit])


def outcome_measurements(
    *, line: Line, start: datetime, period_s: float, steps: int, tags: list[str]
) -> dict[str, list[float | None]]:
    """Return each tag's bucket means of good samples over `steps` periods from `start` (None where none), one query."""
    window = training_window(
        line=line, start=start, end=start + timedelta(seconds=period_s * steps), period_s=period_s, tags=tags
    )
    values = np.asarray(window.values, dtype=np.float64)  # (steps, n_tags), NaN where no good sample
    return {str(name): [None if np.isnan(v) else float(v) for v in values[:, j]] for j, name in enumerate(window.tags)}


def recommendations_since(*, line: Line, since: datetime) -> list[Recommendation]:
    """Return a line's recommendations made since a time (status, reason and times only), oldest first."""
    rows = Recommendation.objects.filter(line=line, created_at__gte=since).only(
        "status", "reason", "slot", "created_at", "decided_at"
    )
    return list(rows.order_by("created_at", "id"))


def outcomes_since(*, line: Line, since: datetime) -> list[Outcome]:
    """Return the outcomes of a line's proposals whose horizon started since a time, oldest first."""
    return list(Outcome.objects.filter(recommendation__line=line, start__gte=since).order_by("start", "id"))


def outcome_of(*, rec: Recommendation) -> Outcome | None:
    """Return a proposal's recorded outcome, or None."""
    return Outcome.objects.filter(recommendation=rec).first()


def recommendations_between(
    *, start: datetime | None, end: datetime | None, line_key: str | None = None
) -> QuerySet[Recommendation]:
    """Return the recommendations made in [start, end) (of one line if given), oldest first, with their decision chain.

    Line, twin and spec versions and the outcome come in the same query, the signatures in one more: an export
    iterates over thousands without a query per row. The twins' checkpoint bytes and previews are left out.
    """
    rows = Recommendation.objects.select_related("line", "twin_version", "spec_version", "outcome")
    rows = rows.defer("twin_version__checkpoint", "twin_version__preview", "spec_version__source_text")
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    if line_key:
        rows = rows.filter(line__key=line_key)
    return rows.prefetch_related("signatures").order_by("created_at", "id")
