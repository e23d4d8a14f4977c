"""Build Plotly figures on the server: one stacked panel per tag, min/max band for rollups, limits as lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

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
    fig = charts.panels([_title(p) for p in panels])
    for row, panel in enumerate(panels, start=1):
        _add_panel(fig, panel, row=row)
    fig.update_xaxes(range=[start, end])
    fig.update_annotations(font={"size": 14})
    return charts.themed(
        fig, height_px=charts.height(len(panels)), margin={"r": charts.LABELS_RIGHT_PX}, showlegend=False
    )


def _title(panel: Panel) -> str:
    tag = panel.tag
    unit = f" [{tag.unit}]" if tag.unit else ""
    return f"<b>{tag.name}</b>{unit} · {tag.role}"


def _add_panel(fig: go.Figure, panel: Panel, *, row: int) -> None:
    tag, series = panel.tag, panel.series
    colour = charts.ROLE_COLOURS.get(tag.role, charts.INK)
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
                fillcolor=charts.band(colour),
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
        (tag.limit_low, "low limit", charts.LIMIT, "dash"),
        (tag.limit_high, "high limit", charts.LIMIT, "dash"),
        (getattr(tag, "safety_low", None), "safety low", charts.SAFETY, "solid"),
        (getattr(tag, "safety_high", None), "safety high", charts.SAFETY, "solid"),
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
