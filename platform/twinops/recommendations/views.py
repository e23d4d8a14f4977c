"""Recommendation page: a line's recommendations, and the selected one's moves, predictions and plan."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from twinops.core.roles import require_capability
from twinops.lines.shortcuts import line_or_404
from twinops.recommendations import pages


@require_GET
@require_capability("view_plant")
def recommendation_page(request: HttpRequest, key: str) -> HttpResponse:
    """Show a line's recommendations; the selected one (?id=, default the newest) with moves and charts."""
    line = line_or_404(key)
    selected = int(request.GET["id"]) if request.GET.get("id", "").isdigit() else None
    return render(request, "recommendations/line.html", pages.recommendation_context(line=line, selected_id=selected))


@require_GET
@require_capability("view_plant")
def kpi_page(request: HttpRequest, key: str) -> HttpResponse:
    """Show a line's proposal KPIs over the last 24 h, 7 d or 30 d (?period=, default 24h)."""
    line = line_or_404(key)
    period = request.GET.get("period", "24h")
    return render(request, "recommendations/kpis.html", pages.kpi_context(line=line, period=period))
