"""Recommendation page: a line's recommendations, and the selected one's moves, predictions and plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from twinops.core.roles import require_capability
from twinops.lines.models import Tag
from twinops.lines.shortcuts import line_or_404
from twinops.recommendations import plots, selectors
from twinops.recommendations.models import Recommendation


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
    return [MoveRow(name=name, unit=units.get(name, ""), current=current.get(name), proposed=plan["first_setpoint"][name],
                    move=move, low=limits.get(name, {}).get("low"), high=limits.get(name, {}).get("high"),
                    max_move=limits.get(name, {}).get("max_move_per_step"),
                    active=[kind for tag, kind in active if tag == name])
            for name, move in (plan.get("first_move") or {}).items()]


def charts(rec: Recommendation, units: dict[str, str]) -> list[dict[str, Any]]:
    """Return the selected recommendation's figures (DOM id, label, figure): predicted CVs, then the MV plan."""
    if not rec.has_proposal:
        return []
    start: datetime = rec.window_end or rec.created_at
    limits, plan = rec.inputs.get("limits", {}), rec.plan
    cv = plots.cv_figure(result=plan, start=start, limits=limits, units=units,
                         band_k=float(rec.settings.get("mpc", {}).get("band_k", 2.0)),
                         current=rec.inputs.get("current_cv_estimate"))
    mv = plots.mv_figure(result=plan, start=start, limits=limits, units=units, current=rec.inputs.get("current_mv", {}))
    return [{"id": f"reco-{rec.pk}-cv", "label": "Predicted CV trajectories with uncertainty bands and limits",
             "figure": cv},
            {"id": f"reco-{rec.pk}-mv", "label": "Planned MV setpoints with limits", "figure": mv}]


@require_GET
@require_capability("view_plant")
def recommendation_page(request: HttpRequest, key: str) -> HttpResponse:
    """Show a line's recommendations; the selected one (?id=, default the newest) with moves and charts."""
    line = line_or_404(key)
    recs = selectors.recommendations_for_line(line=line)
    selected = recs[0] if recs else None
    if request.GET.get("id", "").isdigit():
        try:
            selected = selectors.recommendation_get(line=line, pk=int(request.GET["id"]))
        except Recommendation.DoesNotExist:
            raise Http404(f"{line.key} has no recommendation {request.GET['id']}") from None
    units = dict(Tag.objects.filter(line=line).values_list("name", "unit"))
    context: dict[str, Any] = {"line": line, "recommendations": recs, "selected": selected, "now": timezone.now()}
    if selected is not None:
        context |= {"moves": move_rows(selected, units) if selected.has_proposal else [],
                    "charts": charts(selected, units)}
    return render(request, "recommendations/line.html", context)
