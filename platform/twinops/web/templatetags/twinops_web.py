"""Template helpers: format ages, freshness and counts for the dashboard (figures: core's `twinops_charts`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()


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
