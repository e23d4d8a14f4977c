"""Read recommendations, and the line data a recommendation starts from: the recent window in the twin's tag order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db.models import QuerySet

from twinops.lines.models import Line
from twinops.lines.selectors import line_ids_proposing
from twinops.modeling.selectors import twin_line_ids
from twinops.recommendations.models import Recommendation
from twinops.telemetry.selectors import training_window
from twins import Twin, TwinDataset


def recommendations_for_line(*, line: Line, limit: int = 50) -> list[Recommendation]:
    """Return a line's most recent recommendations, newest first."""
    rows: QuerySet[Recommendation] = Recommendation.objects.filter(line=line).select_related("twin_version")
    return list(rows.defer("twin_version__checkpoint", "twin_version__preview").order_by("-created_at", "-id")[:limit])


def recommendation_get(*, line: Line, pk: int) -> Recommendation:
    """Return one recommendation of a line; raise Recommendation.DoesNotExist if there is none."""
    return Recommendation.objects.select_related("line").get(line=line, pk=pk)


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
    # Buckets are [start + k·period, start + (k + 1)·period): the newest sample falls in the last one.
    window = training_window(
        line=line,
        start=start,
        end=last + timedelta(seconds=period),
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


# --- outcomes -------------------------------------------------------------------------------------------------------
OUTCOME_STATUSES = ("shadow", "approved")  # proposals whose outcome is recorded (approved: released, or being released)


def release_marks(*, rec: Recommendation) -> list[datetime]:
    """Return when the proposal's plan reached the plant: for now its approval time (decided_at).

    Hook for the releases app: when it records PLC writes, return their times here (the first one starts the
    outcome's horizon, all of them are drawn as release marks on the outcome plot).
    """
    return [rec.decided_at] if rec.status == Recommendation.Status.APPROVED and rec.decided_at else []


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
