"""View shortcuts of the lines app, as django.shortcuts: a line by key or a 404."""

from __future__ import annotations

from django.http import Http404

from twinops.lines.models import Line
from twinops.lines.selectors import line_get


def line_or_404(key: str) -> Line:
    """Return the line with this key, or raise Http404 naming the key."""
    try:
        return line_get(key=key)
    except Line.DoesNotExist:
        raise Http404(f"No line {key!r}.") from None
