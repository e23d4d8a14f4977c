"""Build Plotly figures on the server: one stacked panel per tag, min/max band for rollups, limits as lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from twinops.lines.models import Tag
from twinops.telemetry.selectors import ChartSeries

PANEL_HEIGHT_PX = 230  # one tag per panel: readable on a control-room screen without scrolling for 3-4 tags
ROLE_COLOURS = {"CV": "#1f4f8f", "MV": "#6a3d9a", "DV": "#4a5563"}
LIMIT_COLOUR = "#b8860b"  # operating limits: amber, dashed
SAFETY_COLOUR = "#b3261e"  # safety limits: red, solid
PHYSICAL_COLOUR = "#9aa0a9"  # edge of the instrument's range


@dataclass(frozen=True)
class Panel:
    """One tag's series, ready to plot."""

    tag: Tag
    series: ChartSeries
    bucket: str = ""  # e.g. "1 min rollup (min/avg/max)" or "" for raw samples


def figure_for(*, panels: Sequence[Panel], start: datetime, end: datetime) -> dict[str, Any]:
    """Return a Plotly figure (as a JSON-ready dict) with one panel per tag over [start, end]."""
    rows = max(1, len(panels))
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1 / rows if rows > 1 else 0.0,
        subplot_titles=[_title(p) for p in panels] or None,
    )
    for row, panel in enumerate(panels, start=1):
        _add_panel(fig, panel, row=row)
    fig.update_layout(
        height=max(320, 90 + PANEL_HEIGHT_PX * rows),
        margin={"l": 70, "r": 110, "t": 40, "b": 40},
        showlegend=False,
        hovermode="x unified",
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        font={"family": "system-ui, sans-serif", "size": 13, "color": "#1b1d21"},
    )
    fig.update_xaxes(range=[start, end], showgrid=True, gridcolor="#e3e5e8", linecolor="#9aa0a9", type="date")
    fig.update_yaxes(showgrid=True, gridcolor="#e3e5e8", linecolor="#9aa0a9", zeroline=False)
    fig.update_annotations(font={"size": 14})
    return fig.to_plotly_json()


def _title(panel: Panel) -> str:
    tag = panel.tag
    unit = f" [{tag.unit}]" if tag.unit else ""
    return f"<b>{tag.name}</b>{unit} · {tag.role}"


def _add_panel(fig: go.Figure, panel: Panel, *, row: int) -> None:
    tag, series = panel.tag, panel.series
    colour = ROLE_COLOURS.get(tag.role, "#1b1d21")
    times = list(series.times)
    if series.mins is not None and series.maxs is not None:
        # Band first, so the average line draws on top of it.
        fig.add_trace(
            go.Scatter(
                x=times,
                y=list(series.maxs),
                mode="lines",
                line={"width": 0},
                name=f"{tag.name} max",
                hoverinfo="skip",
                connectgaps=False,
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=times,
                y=list(series.mins),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=_rgba(colour, 0.18),
                name=f"{tag.name} min–max",
                hoverinfo="skip",
                connectgaps=False,
            ),
            row=row,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=times,
            y=list(series.values),
            mode="lines",
            name=tag.name,
            connectgaps=False,
            line={"color": colour, "width": 1.8},
            hovertemplate=f"{tag.name}: %{{y:.4g}} {tag.unit}<extra></extra>",
        ),
        row=row,
        col=1,
    )
    for value, label, colour_, dash in (
        (tag.limit_low, "low limit", LIMIT_COLOUR, "dash"),
        (tag.limit_high, "high limit", LIMIT_COLOUR, "dash"),
        (getattr(tag, "safety_low", None), "safety low", SAFETY_COLOUR, "solid"),
        (getattr(tag, "safety_high", None), "safety high", SAFETY_COLOUR, "solid"),
    ):
        if value is None:
            continue
        fig.add_hline(
            y=value,
            row=row,
            col=1,
            line={"color": colour_, "dash": dash, "width": 1.5},
            annotation_text=f"{label} {value:g}",
            annotation_position="right",
            annotation_font={"color": colour_, "size": 12},
        )


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
