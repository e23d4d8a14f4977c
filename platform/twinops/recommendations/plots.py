"""Charts of one recommendation, built on the server: predicted CVs with bands and limits, and the MV plan."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class _Limits:
    """The limit lines of a figure, added as plain shapes and labels (plotly's add_hline copies the figure each)."""

    shown: set[str] = field(default_factory=set)  # kinds with a legend entry already
    shapes: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)


def _limit(fig: go.Figure, row: int, value: float | None, name: str, colour: str, dash: str, limits: _Limits) -> None:
    """Draw a horizontal limit line on a panel; the first line of each kind gets a legend entry."""
    if value is None:
        return
    line = {"color": colour, "width": 1.2, "dash": dash}
    shape, label = charts.hline(row=row, y=value, line=line, text=name, font={"size": 11}, at="top left")
    limits.shapes.append(shape)
    limits.labels.append(label)
    if name not in limits.shown:  # a shape has no legend entry; an empty trace gives it one
        limits.shown.add(name)
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="lines", line={"color": colour, "dash": dash}, name=name, legendgroup=name
            ),
            row=row,
            col=1,
        )


def _layout(fig: go.Figure, title: str, panels: int, limits: _Limits | None = None) -> dict[str, Any]:
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
        shapes=limits.shapes if limits else (),
        annotations=limits.labels if limits else (),
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
    band: str,
    current: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Return the predicted CV trajectories under the plan with their band (`band` says what it is), holding, limits."""
    names = sorted(result["cv_mean"])
    period, steps = float(result["sample_period_s"]), int(result["horizon"])
    t = _times(start, period, steps)
    fig = charts.panels(_titles(names, units))
    drawn = _Limits()
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
            _limit(fig, row, lim.get(key), label, colour, dash, drawn)
    return _layout(fig, f"Predicted CVs over the next {_span(steps * period)} (band: {band})", len(names), drawn)


def mv_figure(
    *, result: dict[str, Any], start: datetime, limits: dict[str, Any], units: dict[str, str], current: dict[str, float]
) -> dict[str, Any]:
    """Return the planned setpoints per MV as steps from the current value, with the MV limits."""
    names = sorted(result["mv_plan"])
    period, steps = float(result["sample_period_s"]), int(result["horizon"])
    # Setpoint u[k] applies during step k, from start + k·period; one period before start shows the current setpoint.
    x = [(start + timedelta(seconds=period * k)).isoformat() for k in range(-1, steps + 1)]
    fig = charts.panels(_titles(names, units))
    drawn = _Limits()
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
            _limit(fig, row, lim.get(key), "MV limit", COLOURS["safety"], "solid", drawn)
    return _layout(fig, "Planned setpoints (first move applies now)", len(names), drawn)


# --- outcomes -------------------------------------------------------------------------------------------------------
def outcome_figure(
    *, outcome: Any, units: dict[str, str], marks: list[datetime], limits: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return each CV measured over the horizon against the compared prediction and its band, with release marks."""
    names = sorted(outcome.predicted)
    t = _times(outcome.start, float(outcome.period_s), int(outcome.horizon))
    released = outcome.compared_with == "plan"
    label = "predicted under the released plan" if released else "predicted for holding (plan not applied)"
    fig = charts.panels(_titles(names, units))
    drawn = _Limits()
    for row, name in enumerate(names, start=1):
        first = row == 1
        fig.add_trace(
            go.Scatter(
                x=t,
                y=outcome.band_hi[name],
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
                y=outcome.band_lo[name],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=COLOURS["band"],
                name="predicted band",
                showlegend=first,
                legendgroup="band",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=outcome.predicted[name],
                mode="lines",
                name=label,
                line={"color": COLOURS["plan"] if released else COLOURS["hold"], "width": 2, "dash": "dot"},
                showlegend=first,
                legendgroup="predicted",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=outcome.measured[name],
                mode="lines+markers",
                name="measured",
                line={"color": COLOURS["now"], "width": 2},
                marker={"size": 5},
                showlegend=first,
                legendgroup="measured",
            ),
            row=row,
            col=1,
        )
        lim = (limits or {}).get(name, {})
        for key, text, colour, dash in (
            ("low", "operating limit", COLOURS["limit"], "dash"),
            ("high", "operating limit", COLOURS["limit"], "dash"),
        ):
            _limit(fig, row, lim.get(key), text, colour, dash, drawn)
    for (
        mark
    ) in marks:  # release marks: when the plan reached the plant (approval now; PLC writes from the releases app)
        fig.add_vline(x=mark.isoformat(), line={"color": COLOURS["limit"], "width": 1.5, "dash": "dashdot"})
    if marks:
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="lines", name="release", line={"color": COLOURS["limit"], "dash": "dashdot"}
            ),
            row=1,
            col=1,
        )
    title = "Measured CVs against the " + ("released plan's prediction" if released else "prediction for holding")
    return _layout(fig, title, len(names), drawn)


# --- KPIs -----------------------------------------------------------------------------------------------------------
def _plain_axes(figure: dict[str, Any], x_type: str = "linear") -> dict[str, Any]:
    """Set the x axes of a themed figure (dates by default) to another type."""
    for key, axis in figure["layout"].items():
        if key.startswith("xaxis") and isinstance(axis, dict):
            axis["type"] = x_type
    return figure


def slots_figure(*, counts: list[tuple[str, int]]) -> dict[str, Any]:
    """Return the period's recommendation slots by what became of them (a proposal, or why there was none)."""
    fig = go.Figure(
        go.Bar(
            x=[n for _, n in counts],
            y=[label for label, _ in counts],
            orientation="h",
            marker={"color": [charts.CV if label == "proposal" else charts.MUTED for label, _ in counts]},
            name="slots",
        )
    )
    figure = charts.themed(
        fig,
        height_px=max(charts.MIN_HEIGHT_PX, 120 + 34 * len(counts)),
        margin={"l": 220},
        title={"text": "Recommendation slots: proposals, and why the others had none", "x": 0.01},
        showlegend=False,
    )
    figure["layout"]["yaxis"]["autorange"] = "reversed"
    return _plain_axes(figure)


def error_figure(*, mae: dict[str, list[float | None]], period_s: float, units: dict[str, str]) -> dict[str, Any]:
    """Return each CV's mean absolute prediction error by step ahead (minutes ahead on the x axis)."""
    names = sorted(mae)
    fig = charts.panels(_titles(names, units))
    for row, name in enumerate(names, start=1):
        ahead = [period_s * (k + 1) / 60 for k in range(len(mae[name]))]
        fig.add_trace(
            go.Scatter(
                x=ahead,
                y=mae[name],
                mode="lines+markers",
                name="mean |measured − predicted|",
                line={"color": COLOURS["plan"], "width": 2},
                showlegend=row == 1,
            ),
            row=row,
            col=1,
        )
    fig.update_xaxes(title_text="minutes ahead", row=len(names) or 1, col=1)
    return _plain_axes(_layout(fig, "Prediction error by horizon", len(names)))


def coverage_figure(*, starts: list[datetime], coverage: list[float | None], compared: list[str]) -> dict[str, Any]:
    """Return each outcome's share of measured CV samples inside the predicted band, over time."""
    fig = go.Figure()
    for kind, name, colour in (("plan", "released", COLOURS["plan"]), ("hold", "shadow (hold)", COLOURS["hold"])):
        pick = [i for i, c in enumerate(compared) if c == kind]
        fig.add_trace(
            go.Scatter(
                x=[starts[i].isoformat() for i in pick],
                y=[coverage[i] for i in pick],
                mode="markers",
                name=name,
                marker={"color": colour, "size": 8},
            )
        )
    figure = charts.themed(fig, height_px=charts.MIN_HEIGHT_PX, title={"text": "Band coverage per outcome", "x": 0.01})
    figure["layout"]["yaxis"]["range"] = [-0.05, 1.05]
    figure["layout"]["yaxis"]["tickformat"] = ".0%"
    return figure


def gain_figure(*, points: list[tuple[float, float, str]]) -> dict[str, Any]:
    """Return realized against predicted per outcome: gain per hour (released) or value per hour (shadow, holding)."""
    fig = go.Figure()
    for kind, name, colour in (
        ("plan", "released: gain per hour vs holding", COLOURS["plan"]),
        ("hold", "shadow: value per hour while holding", COLOURS["hold"]),
    ):
        pick = [(x, y) for x, y, k in points if k == kind]
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in pick],
                y=[y for _, y in pick],
                mode="markers",
                name=name,
                marker={"color": colour, "size": 8},
            )
        )
    values = [v for x, y, _ in points for v in (x, y)]
    if values:
        lo, hi = min(values), max(values)
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="realized = predicted",
                line={"color": COLOURS["limit"], "dash": "dot", "width": 1},
            )
        )
    figure = charts.themed(
        fig,
        height_px=charts.CHART_BOX_PX,
        title={"text": "Realized against predicted, currency per hour", "x": 0.01},
        xaxis_title="predicted",
        yaxis_title="realized",
    )
    return _plain_axes(figure)
