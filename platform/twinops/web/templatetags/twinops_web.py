"""Template helpers: embed a server-built Plotly figure, format ages and counts for the dashboard."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from plotly.utils import PlotlyJSONEncoder

register = template.Library()

# As django.utils.html.json_script: keep "</script>" and friends from ending the element early.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


@register.simple_tag
def plotly_figure(figure: dict[str, Any], css_class: str = "plot") -> SafeString:
    """Render a figure's div and its `<script type="application/json" class="plotly-figure">` for app.js to draw.

    Each render gets a fresh div id: htmx "settles" an element whose id survives a swap by putting back its new
    attributes after a moment, which would strip the classes Plotly just added to the div and break its layout.
    """
    target = f"plot-{secrets.token_hex(6)}"
    height = (figure.get("layout") or {}).get("height")
    style = f"height: {int(height)}px" if height else ""
    payload = json.dumps(figure, cls=PlotlyJSONEncoder, separators=(",", ":")).translate(_JSON_ESCAPES)
    return format_html(
        '<div id="{}" class="{}" style="{}"></div>'
        '<script type="application/json" class="plotly-figure" data-target="{}">{}</script>',
        target,
        css_class,
        style,
        target,
        mark_safe(payload),
    )


@register.filter
def age(moment: datetime | None) -> str:
    """Say how long ago a moment was, briefly ("4 min ago", "3 d ago")."""
    if moment is None:
        return "no data"
    delta = timezone.now() - moment
    if delta < timedelta(0):
        return "in the future"
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def freshness(moment: datetime | None, sample_period_s: float | None = None) -> str:
    """Classify data freshness as ok, stale or none (stale: nothing new for 10 sample periods, at least 15 min)."""
    if moment is None:
        return "none"
    allowed = max(15 * 60.0, 10 * float(sample_period_s or 0))
    return "ok" if (timezone.now() - moment).total_seconds() <= allowed else "stale"


@register.filter
def percent(part: int | None, whole: int | None) -> str:
    """Format part/whole as a percentage with one decimal, or an en dash when there is nothing."""
    if not whole:
        return "–"
    return f"{100.0 * (part or 0) / whole:.1f} %"
