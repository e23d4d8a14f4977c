"""The dashboard's chart theme: one palette and one layout for every server-built Plotly figure; and its JSON."""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
from django.utils.safestring import SafeString, mark_safe
from plotly.subplots import make_subplots
from plotly.utils import PlotlyJSONEncoder

# --- palette --------------------------------------------------------------------------------------------------
INK = "#1b1d21"  # text, recorded values, the "now" marker
CV = "#1f4f8f"  # controlled variables, the twin's forecast, the plan
MV = "#6a3d9a"  # manipulated variables (setpoints)
DV = "#4a5563"  # measured disturbances
MUTED = "#6b7280"  # what would happen without acting (holding setpoints)
LIMIT = "#b8860b"  # operating limits: amber, dashed; also the linear baseline, dotted
SAFETY = "#b3261e"  # safety limits and MV limits: red, solid
GRID, AXIS, PAPER = "#e3e5e8", "#9aa0a9", "#ffffff"
ROLE_COLOURS = {"CV": CV, "MV": MV, "DV": DV}
BAND_ALPHA = 0.18  # opacity of uncertainty and min-max bands

# --- layout, px ----------------------------------------------------------------------------------------------
PANEL_HEIGHT_PX = 230  # one tag or CV per panel: 3-4 panels fit a control-room screen without scrolling
FRAME_PX = 90  # height besides the panels: top and bottom margins, subplot titles
MIN_HEIGHT_PX = 320  # a one-panel figure
CHART_BOX_PX = 416  # a figure that is its own .chart-box (26rem min-height in app.css) fills it
MARGIN = {"l": 70, "r": 30, "t": 40, "b": 40}
LABELS_RIGHT_PX = 110  # right margin when limit lines carry their labels at the right end
FONT = {"family": "system-ui, sans-serif", "size": 13, "color": INK}
_JSON_ESCAPES = {"&": "\\u0026", ">": "\\u003E", "<": "\\u003C"}  # as json_script: no early </script>


def band(colour: str, alpha: float = BAND_ALPHA) -> str:
    """Return a "#rrggbb" colour as a translucent rgba() fill."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def panels(titles: Sequence[str]) -> dict[str, Any]:
    """Return an empty figure (a plain dict) of stacked panels sharing the time axis, one per title."""
    layout = _panels_layout(tuple(bool(t) for t in titles))
    # A fresh copy of all but plotly's template (~10 kB of defaults, shared and never changed: copying it was most
    # of a small figure's time); traces go in as plain dicts, never plotly's objects, which validate every point.
    fresh = {key: copy.deepcopy(value) for key, value in layout.items() if key != "template"}
    for annotation, title in zip(fresh.get("annotations", []), [t for t in titles if t], strict=True):
        annotation["text"] = title
    return {"data": [], "layout": {"template": layout["template"], **fresh}}


def single() -> dict[str, Any]:
    """Return an empty figure (a plain dict) of one plot."""
    return {"data": [], "layout": {"template": _panels_layout(None)["template"]}}


@functools.lru_cache(maxsize=64)
def _panels_layout(titled: tuple[bool, ...] | None) -> dict[str, Any]:
    """Return make_subplots' layout for stacked panels (title placeholders where titled); None: a plain figure's.

    make_subplots takes ~100 ms, most of a chart page's time, for what depends only on the number of panels.
    """
    if titled is None:
        return go.Figure().to_plotly_json()["layout"]
    rows = max(1, len(titled))
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1 / rows if rows > 1 else 0.0,
        subplot_titles=["title" if t else "" for t in titled] or None,
    )
    return fig.to_plotly_json()["layout"]


def height(n_panels: int, *, header_px: int = 0, min_px: int = MIN_HEIGHT_PX) -> int:
    """Return the figure height for n stacked panels under a header (title, legend) of header_px."""
    return max(min_px, FRAME_PX + header_px + PANEL_HEIGHT_PX * max(1, n_panels))


def axis_refs(row: int) -> dict[str, str]:
    """Return the axes of stacked panel `row` (from 1) as a plain trace dict names them (as make_subplots does)."""
    n = "" if row == 1 else str(row)
    return {"xaxis": f"x{n}", "yaxis": f"y{n}"}


def hline(
    *, row: int, y: float, line: dict[str, Any], text: str, font: dict[str, Any], at: str = "right"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return a line across panel `row` at y and its label (at the right end, or "top left"), as (shape, label).

    The same dicts as plotly's `add_hline(annotation_position=at)`, without its validation and deep copies of the
    whole figure per line (tens of ms each on a figure with a day of data).
    """
    refs = axis_refs(row)
    xref, yref = f"{refs['xaxis']} domain", refs["yaxis"]
    shape = {"type": "line", "xref": xref, "x0": 0, "x1": 1, "yref": yref, "y0": y, "y1": y, "line": line}
    anchor = {"right": (1, "left", "middle"), "top left": (0, "left", "bottom")}[at]
    label = {"text": text, "showarrow": False, "xref": xref, "yref": yref, "y": y, "font": font}
    label.update(zip(("x", "xanchor", "yanchor"), anchor, strict=True))
    return shape, label


def vline(*, row: int, x: Any, line: dict[str, Any]) -> dict[str, Any]:
    """Return a line down panel `row` at x, as plotly's `add_vline` draws it (without copying the whole figure)."""
    refs = axis_refs(row)
    xref, yref = refs["xaxis"], f"{refs['yaxis']} domain"
    return {"type": "line", "x0": x, "x1": x, "xref": xref, "y0": 0, "y1": 1, "yref": yref, "line": line}


def themed(
    figure: dict[str, Any],
    *,
    height_px: int,
    margin: dict[str, int] | None = None,
    traces: Sequence[dict[str, Any]] = (),
    shapes: Sequence[dict[str, Any]] = (),
    annotations: Sequence[dict[str, Any]] = (),
    **layout: Any,
) -> dict[str, Any]:
    """Apply the theme and any layout given (nested dicts, as plotly.js names them) to a `panels` or `single` figure.

    `traces`, `shapes` and `annotations` are plain dicts added after the figure's own. Returns the figure.
    """
    out = figure["layout"]
    template = out.pop("template", None)  # shared between figures: kept out of the merge below
    theme = {"height": height_px, "margin": {**MARGIN, **(margin or {})}, "hovermode": "x unified"}
    theme.update(paper_bgcolor=PAPER, plot_bgcolor=PAPER, font=FONT)
    theme.update(layout)
    _merge(out, theme)
    if template is not None:
        out.setdefault("template", template)
    for axis, style in (("xaxis", _X_AXIS), ("yaxis", _Y_AXIS)):
        names = [k for k in out if re.fullmatch(rf"{axis}\d*", k)] or [axis]
        for name in names:
            _merge(out.setdefault(name, {}), style)
    figure["data"] = [*figure["data"], *traces]
    for key, extra in (("shapes", shapes), ("annotations", annotations)):
        if extra:
            out[key] = [*out.get(key, ()), *extra]
    return figure


_X_AXIS = {"showgrid": True, "gridcolor": GRID, "linecolor": AXIS, "type": "date"}
_Y_AXIS = {"showgrid": True, "gridcolor": GRID, "linecolor": AXIS, "zeroline": False}


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge `update` into `into`, dicts key by key, as plotly's update does."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value) if isinstance(value, dict | list) else value


def typed_array(values: Sequence[float | None] | np.ndarray) -> dict[str, str]:
    """Return numbers as a plotly.js typed array (float64, base64), None as NaN: what Plotly draws as a gap."""
    data = np.asarray(values, dtype="<f8")
    return {"dtype": "f8", "bdata": base64.b64encode(data.tobytes()).decode("ascii")}


class _FigureEncoder(PlotlyJSONEncoder):
    """Plotly's encoder with datetimes first: a day of a chart's times otherwise each try five encoders before it."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()  # what plotly's encoder makes of one, too
        return super().default(obj)


def figure_json(figure: dict[str, Any]) -> SafeString:
    """Serialise a figure for a `<script type="application/json">` element (no early `</script>`)."""
    text = json.dumps(figure, cls=_FigureEncoder, separators=(",", ":"))
    for char, escaped in _JSON_ESCAPES.items():  # str.replace: str.translate looks up every character (~90 ms)
        text = text.replace(char, escaped)
    return mark_safe(text)
