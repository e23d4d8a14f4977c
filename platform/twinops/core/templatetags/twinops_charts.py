"""The one way a page embeds a server-built Plotly figure: `{% plotly_figure figure %}`, drawn by app.js."""

from __future__ import annotations

import secrets
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from twinops.core.charts import figure_json

register = template.Library()


@register.simple_tag
def plotly_figure(figure: dict[str, Any], css_class: str = "plot", target: str = "", label: str = "") -> SafeString:
    """Render a figure's div and its `<script type="application/json" class="plotly-figure">` for app.js to draw.

    `target` is the div's id; by default each render gets a fresh one: htmx "settles" an element whose id survives a
    swap by putting back its new attributes after a moment, which would strip the classes Plotly just added to the
    div and break its layout. `label` makes the div an image with that accessible name.
    """
    target = target or f"plot-{secrets.token_hex(6)}"
    height = (figure.get("layout") or {}).get("height")
    style = f"height: {int(height)}px" if height else ""
    role = format_html(' role="img" aria-label="{}"', label) if label else ""
    return format_html(
        '<div id="{}" class="{}" style="{}"{}></div>'
        '<script type="application/json" class="plotly-figure" data-target="{}">{}</script>',
        target,
        css_class,
        style,
        role,
        target,
        figure_json(figure),
    )
