"""Charts of one recommendation, built on the server: predicted CVs with bands and limits, and the MV plan."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from twinops.core import charts

COLOURS = {
    "plan": charts.CV,
    "band": charts.band(charts.CV),
    "hold": charts.MUTED,
    "limit": charts.LIMIT,
    "safety": charts.SAFETY,
    "now": charts.INK,
}


def _times(start: datetime, period_s: float, steps: int) -> list[str]:
    """Return the end of each predictor step k = 0..steps-1 (the time its CV prediction refers to)."""
    return [(start + timedelta(seconds=period_s * (k + 1))).isoformat() for k in range(steps)]


def _limit(fig: go.Figure, row: int, value: float | None, name: str, colour: str, dash: str, shown: set[str]) -> None:
    """Draw a horizontal limit line on a panel; the first line of each kind gets a legend entry."""
    if value is None:
        return
    fig.add_hline(
        y=value,
        row=row,
        col=1,
        line={"color": colour, "width": 1.2, "dash": dash},
        annotation_text=name,
        annotation_position="top left",
        annotation_font_size=11,
    )
    if name not in shown:  # add_hline draws a shape, which has no legend entry; an empty trace gives it one
        shown.add(name)
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="lines", line={"color": colour, "dash": dash}, name=name, legendgroup=name
            ),
            row=row,
            col=1,
        )


def _layout(fig: go.Figure, title: str, panels: int) -> dict[str, Any]:
    # A header of title and legend over the panels; the figure fills its chart box at least.
    height, top = charts.height(panels, header_px=40, min_px=charts.CHART_BOX_PX), 105
    return charts.themed(
        fig,
        height_px=height,
        margin={"t": top},
        title={"text": title, "x": 0.01, "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 12}},
        # Above the first panel's title: 34 px over the plot area, whatever the number of panels.
        legend={
            "orientation": "h",
            "y": 1 + 34 / (height - top - charts.MARGIN["b"]),
            "yanchor": "bottom",
            "x": 0.0,
            "xanchor": "left",
        },
    )


def _span(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 120 else f"{seconds:.3g} s"


def _titles(names: list[str], units: dict[str, str]) -> list[str]:
    return [f"<b>{n}</b>" + (f" [{units[n]}]" if units.get(n) else "") for n in names]


def cv_figure(
    *,
    result: dict[str, Any],
    start: datetime,
    limits: dict[str, Any],
    units: dict[str, str],
    band_k: float,
    current: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Return the predicted CV trajectories under the plan (band = mean ± band_k·spread), holding, and the CV limits."""
    names = sorted(result["cv_mean"])
    period, steps = float(result["sample_period_s"]), int(result["horizon"])
    t = _times(start, period, steps)
    fig = charts.panels(_titles(names, units))
    shown: set[str] = set()
    for row, name in enumerate(names, start=1):
        first = row == 1
        fig.add_trace(
            go.Scatter(
                x=t,
                y=result["cv_hi"][name],
                mode="lines",
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup="band",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=result["cv_lo"][name],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=COLOURS["band"],
                name="uncertainty band",
                showlegend=first,
                legendgroup="band",
            ),
            row=row,
            col=1,
        )
        if result.get("cv_hold_mean"):
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=result["cv_hold_mean"][name],
                    mode="lines",
                    name="holding setpoints",
                    line={"color": COLOURS["hold"], "width": 1.2, "dash": "dot"},
                    showlegend=first,
                    legendgroup="hold",
                ),
                row=row,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=result["cv_mean"][name],
                mode="lines",
                name="predicted under the plan",
                line={"color": COLOURS["plan"], "width": 2},
                showlegend=first,
                legendgroup="plan",
            ),
            row=row,
            col=1,
        )
        if current and name in current:
            fig.add_trace(
                go.Scatter(
                    x=[start.isoformat()],
                    y=[current[name]],
                    mode="markers",
                    name="now (twin)",
                    marker={"color": COLOURS["now"], "size": 8},
                    showlegend=first,
                    legendgroup="now",
                ),
                row=row,
                col=1,
            )
        lim = limits.get(name, {})
        for key, label, colour, dash in (
            ("low", "operating limit", COLOURS["limit"], "dash"),
            ("high", "operating limit", COLOURS["limit"], "dash"),
            ("safety_low", "safety limit", COLOURS["safety"], "solid"),
            ("safety_high", "safety limit", COLOURS["safety"], "solid"),
        ):
            _limit(fig, row, lim.get(key), label, colour, dash, shown)
    return _layout(
        fig, f"Predicted CVs over the next {_span(steps * period)} (band: ± {band_k:g}× ensemble spread)", len(names)
    )


def mv_figure(
    *, result: dict[str, Any], start: datetime, limits: dict[str, Any], units: dict[str, str], current: dict[str, float]
) -> dict[str, Any]:
    """Return the planned setpoints per MV as steps from the current value, with the MV limits."""
    names = sorted(result["mv_plan"])
    period, steps = float(result["sample_period_s"]), int(result["horizon"])
    # Setpoint u[k] applies during step k, from start + k·period; one period before start shows the current setpoint.
    x = [(start + timedelta(seconds=period * k)).isoformat() for k in range(-1, steps + 1)]
    fig = charts.panels(_titles(names, units))
    shown: set[str] = set()
    for row, name in enumerate(names, start=1):
        first = row == 1
        plan = list(result["mv_plan"][name])
        y = [current.get(name, plan[0]), *plan, plan[-1]]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line_shape="hv",
                name="planned setpoint",
                line={"color": COLOURS["plan"], "width": 2},
                showlegend=first,
                legendgroup="plan",
            ),
            row=row,
            col=1,
        )
        lim = limits.get(name, {})
        for key in ("low", "high"):
            _limit(fig, row, lim.get(key), "MV limit", COLOURS["safety"], "solid", shown)
    return _layout(fig, "Planned setpoints (first move applies now)", len(names))
