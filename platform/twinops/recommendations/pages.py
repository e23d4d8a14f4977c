"""Page data for the recommendation page: the list, and the selected proposal's moves table and charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import Http404
from django.utils import timezone

from twinops.lines.models import Line
from twinops.lines.selectors import tag_units
from twinops.modeling.selectors import twin_promoted
from twinops.recommendations import plots, selectors
from twinops.recommendations.models import Recommendation


def recommendation_context(*, line: Line, selected_id: int | None) -> dict[str, Any]:
    """Return a line's recommendations and the selected one (default the newest) with its moves and charts."""
    recs = selectors.recommendations_for_line(line=line)
    selected = recs[0] if recs else None
    if selected_id is not None:
        try:
            selected = selectors.recommendation_get(line=line, pk=selected_id)
        except Recommendation.DoesNotExist:
            raise Http404(f"{line.key} has no recommendation {selected_id}") from None
    context: dict[str, Any] = {
        "line": line,
        "recommendations": recs,
        "selected": selected,
        "now": timezone.now(),
        "promoted": twin_promoted(line=line),
    }
    if selected is not None:
        units = tag_units(line=line)
        context |= {
            "moves": move_rows(selected, units) if selected.has_proposal else [],
            "charts": charts(selected, units),
        }
    return context


@dataclass(frozen=True)
class MoveRow:
    """One MV of a proposal: current setpoint, proposed first setpoint and the limits it respects."""

    name: str
    unit: str
    current: float | None
    proposed: float
    move: float
    low: float | None
    high: float | None
    max_move: float | None
    active: list[str]  # constraints of this MV active somewhere in the plan ("mv_high", "max_move", …)


def move_rows(rec: Recommendation, units: dict[str, str]) -> list[MoveRow]:
    """Return the proposed-moves table of a recommendation with a proposal."""
    plan, limits = rec.plan, rec.inputs.get("limits", {})
    current = rec.inputs.get("current_mv", {})
    active = [str(a).split(":", 1) for a in plan.get("active_constraints", [])]
    return [
        MoveRow(
            name=name,
            unit=units.get(name, ""),
            current=current.get(name),
            proposed=plan["first_setpoint"][name],
            move=move,
            low=limits.get(name, {}).get("low"),
            high=limits.get(name, {}).get("high"),
            max_move=limits.get(name, {}).get("max_move_per_step"),
            active=[kind for tag, kind in active if tag == name],
        )
        for name, move in (plan.get("first_move") or {}).items()
    ]


def charts(rec: Recommendation, units: dict[str, str]) -> list[dict[str, Any]]:
    """Return the selected recommendation's figures (DOM id, label, figure): predicted CVs, then the MV plan."""
    if not rec.has_proposal:
        return []
    start: datetime = rec.window_end or rec.created_at
    limits, plan = rec.inputs.get("limits", {}), rec.plan
    cv = plots.cv_figure(
        result=plan,
        start=start,
        limits=limits,
        units=units,
        band_k=float(rec.settings.get("mpc", {}).get("band_k", 2.0)),
        current=rec.inputs.get("current_cv_estimate"),
    )
    mv = plots.mv_figure(result=plan, start=start, limits=limits, units=units, current=rec.inputs.get("current_mv", {}))
    return [
        {
            "id": f"reco-{rec.pk}-cv",
            "label": "Predicted CV trajectories with uncertainty bands and limits",
            "figure": cv,
        },
        {"id": f"reco-{rec.pk}-mv", "label": "Planned MV setpoints with limits", "figure": mv},
    ]
