"""Build Plotly figures on the server: one stacked panel per tag, min/max band for rollups, limits as lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twinops.core import charts
from twinops.lines.models import Tag
from twinops.telemetry.selectors import ChartSeries


@dataclass(frozen=True)
class Panel:
    """One tag's series, ready to plot."""

    tag: Tag
    series: ChartSeries
    bucket: str = ""  # e.g. "1 min rollup (min/avg/max)" or "" for raw samples


def figure_for(*, panels: Sequence[Panel], start: datetime, end: datetime) -> dict[str, Any]:
    """Return a Plotly figure (as a JSON-ready dict) with one panel per tag over [start, end]."""
    figure = charts.panels([_title(p) for p in panels])
    traces: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for row, panel in enumerate(panels, start=1):
        traces += _traces(panel, row=row)
        for shape, label in _limit_lines(panel.tag, row=row):
            shapes.append(shape)
            labels.append(label)
    for title in figure["layout"].get("annotations", []):
        title["font"] = {"size": 14}
    charts.themed(
        figure,
        height_px=charts.height(len(panels)),
        margin={"r": charts.LABELS_RIGHT_PX},
        showlegend=False,
        traces=traces,
        shapes=shapes,
        annotations=labels,
    )
    for name, axis in figure["layout"].items():
        if name.startswith("xaxis"):
            axis["range"] = [start, end]
    return figure


def _title(panel: Panel) -> str:
    tag = panel.tag
    unit = f" [{tag.unit}]" if tag.unit else ""
    return f"<b>{tag.name}</b>{unit} · {tag.role}"


def _traces(panel: Panel, *, row: int) -> list[dict[str, Any]]:
    """Return a panel's traces as plain dicts: its min-max band (rollups) first, so the average draws on top."""
    tag, series = panel.tag, panel.series
    colour = charts.ROLE_COLOURS.get(tag.role, charts.INK)
    # Typed arrays (milliseconds on the date axis; NaN where a point has no good value, a gap): a day of four tags
    # is ~1/3 of the JSON and ~1/10 of the time that lists of ISO times and float literals took.
    times = charts.typed_array(series.times_us / 1000.0)
    common = {"type": "scatter", "mode": "lines", "x": times, "connectgaps": False, **charts.axis_refs(row)}
    traces = []
    if series.mins is not None and series.maxs is not None:
        band = {**common, "line": {"width": 0}, "hoverinfo": "skip"}
        traces.append({**band, "y": charts.typed_array(series.maxs), "name": f"{tag.name} max"})
        traces.append(
            {
                **band,
                "y": charts.typed_array(series.mins),
                "name": f"{tag.name} min–max",
                "fill": "tonexty",
                "fillcolor": charts.band(colour),
            }
        )
    traces.append(
        {
            **common,
            "y": charts.typed_array(series.values),
            "name": tag.name,
            "line": {"color": colour, "width": 1.8},
            "hovertemplate": f"{tag.name}: %{{y:.4g}} {tag.unit}<extra></extra>",
        }
    )
    return traces


def _limit_lines(tag: Tag, *, row: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    lines = []
    for value, label, colour, dash in (
        (tag.limit_low, "low limit", charts.LIMIT, "dash"),
        (tag.limit_high, "high limit", charts.LIMIT, "dash"),
        (getattr(tag, "safety_low", None), "safety low", charts.SAFETY, "solid"),
        (getattr(tag, "safety_high", None), "safety high", charts.SAFETY, "solid"),
    ):
        if value is not None:
            line = {"color": colour, "dash": dash, "width": 1.5}
            text = f"{label} {value:g}"
            lines.append(charts.hline(row=row, y=value, line=line, text=text, font={"color": colour, "size": 14}))
    return lines
