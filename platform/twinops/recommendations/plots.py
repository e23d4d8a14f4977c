"""Charts of one recommendation, built on the server: predicted CVs with bands and limits, and the MV plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from twinops.core import charts

COLOURS = {
    "plan": charts.CV,
    "band": charts.band(charts.CV),
    "hold": charts.MUTED,
    "limit": charts.LIMIT,
    "safety": charts.SAFETY,
    "now": charts.INK,
}
OPERATING = ("operating limit", COLOURS["limit"], "dash")
CV_LIMITS = (("low", *OPERATING), ("high", *OPERATING))
SAFETY = ("safety limit", COLOURS["safety"], "solid")
CV_SAFETY_LIMITS = (("safety_low", *SAFETY), ("safety_high", *SAFETY))
MV_LIMITS = (("low", "MV limit", COLOURS["safety"], "solid"), ("high", "MV limit", COLOURS["safety"], "solid"))


def _times(start: datetime, period_s: float, steps: int) -> list[str]:
    """Return the end of each predictor step k = 0..steps-1 (the time its CV prediction refers to)."""
    return [(start + timedelta(seconds=period_s * (k + 1))).isoformat() for k in range(steps)]


def _trace(row: int, **props: Any) -> dict[str, Any]:
    """Return a scatter trace on stacked panel `row` as a plain dict (plotly's objects validate every property)."""
    return {"type": "scatter", **props, **charts.axis_refs(row)}


@dataclass
class _Drawing:
    """What a figure of stacked panels draws: its traces, and its limit lines as plain shapes and labels."""

    traces: list[dict[str, Any]] = field(default_factory=list)
    shapes: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    shown: set[str] = field(default_factory=set)  # limit kinds with a legend entry already

    def series(self, row: int, x: list[str], y: Any, *, name: str, group: str, **style: Any) -> None:
        """Draw a line (or markers) on a panel; its legend entry shows on the first panel only."""
        props = {"x": x, "y": y, "mode": "lines", "name": name, "showlegend": row == 1, "legendgroup": group}
        self.traces.append(_trace(row, **props | style))

    def band(self, row: int, x: list[str], hi: Any, lo: Any, *, name: str) -> None:
        """Shade between hi and lo on a panel: the upper edge, then the lower one filled up to it."""
        edge = {"x": x, "mode": "lines", "line": {"width": 0}, "legendgroup": "band"}
        self.traces.append(_trace(row, **edge, y=hi, hoverinfo="skip", showlegend=False))
        band = {"fill": "tonexty", "fillcolor": COLOURS["band"], "name": name, "showlegend": row == 1}
        self.traces.append(_trace(row, **edge, y=lo, **band))

    def limits(self, row: int, values: dict[str, Any], kinds: tuple[tuple[str, str, str, str], ...]) -> None:
        """Draw a panel's limit lines (key, legend name, colour, dash); the first of each name gets a legend entry."""
        for key, name, colour, dash in kinds:
            value = values.get(key)
            if value is None:
                continue
            line = {"color": colour, "width": 1.2, "dash": dash}
            shape, label = charts.hline(row=row, y=value, line=line, text=name, font={"size": 11}, at="top left")
            self.shapes.append(shape)
            self.labels.append(label)
            if name not in self.shown:  # a shape has no legend entry; an empty trace gives it one
                self.shown.add(name)
                legend = {"color": colour, "dash": dash}
                self.traces.append(
                    _trace(row, x=[None], y=[None], mode="lines", line=legend, name=name, legendgroup=name)
                )


def _layout(names: list[str], units: dict[str, str], title: str, drawing: _Drawing) -> dict[str, Any]:
    """Return the stacked panels of `names` with what was drawn, under a header of title and legend."""
    # The figure fills its chart box at least.
    height, top = charts.height(len(names), header_px=40, min_px=charts.CHART_BOX_PX), 105
    titles = [f"<b>{n}</b>" + (f" [{units[n]}]" if units.get(n) else "") for n in names]
    return charts.themed(
        charts.panels(titles),
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
        traces=drawing.traces,
        shapes=drawing.shapes,
        annotations=drawing.labels,
    )


def _span(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 120 else f"{seconds:.3g} s"


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
    drawing = _Drawing()
    for row, name in enumerate(names, start=1):
        drawing.band(row, t, result["cv_hi"][name], result["cv_lo"][name], name="uncertainty band")
        if result.get("cv_hold_mean"):
            hold = {"color": COLOURS["hold"], "width": 1.2, "dash": "dot"}
            drawing.series(row, t, result["cv_hold_mean"][name], name="holding setpoints", group="hold", line=hold)
        plan = {"color": COLOURS["plan"], "width": 2}
        drawing.series(row, t, result["cv_mean"][name], name="predicted under the plan", group="plan", line=plan)
        if current and name in current:
            now = {"mode": "markers", "marker": {"color": COLOURS["now"], "size": 8}}
            drawing.series(row, [start.isoformat()], [current[name]], name="now (twin)", group="now", **now)
        drawing.limits(row, limits.get(name, {}), CV_LIMITS + CV_SAFETY_LIMITS)
    title = f"Predicted CVs over the next {_span(steps * period)} (band: {band})"
    return _layout(names, units, title, drawing)


def mv_figure(
    *, result: dict[str, Any], start: datetime, limits: dict[str, Any], units: dict[str, str], current: dict[str, float]
) -> dict[str, Any]:
    """Return the planned setpoints per MV as steps from the current value, with the MV limits."""
    names = sorted(result["mv_plan"])
    period, steps = float(result["sample_period_s"]), int(result["horizon"])
    # Setpoint u[k] applies during step k, from start + k·period; one period before start shows the current setpoint.
    x = [(start + timedelta(seconds=period * k)).isoformat() for k in range(-1, steps + 1)]
    drawing = _Drawing()
    for row, name in enumerate(names, start=1):
        plan = list(result["mv_plan"][name])
        y = [current.get(name, plan[0]), *plan, plan[-1]]
        line = {"color": COLOURS["plan"], "width": 2, "shape": "hv"}
        drawing.series(row, x, y, name="planned setpoint", group="plan", line=line)
        drawing.limits(row, limits.get(name, {}), MV_LIMITS)
    return _layout(names, units, "Planned setpoints (first move applies now)", drawing)


# --- outcomes -------------------------------------------------------------------------------------------------------
def outcome_figure(
    *, outcome: Any, units: dict[str, str], marks: list[datetime], limits: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return each CV measured over the horizon against the compared prediction and its band, with release marks."""
    names = sorted(outcome.predicted)
    t = _times(outcome.start, float(outcome.period_s), int(outcome.horizon))
    released = outcome.compared_with == "plan"
    label = "predicted under the released plan" if released else "predicted for holding (plan not applied)"
    drawing = _Drawing()
    # Release marks: when the plan reached the plant (approval now; PLC writes from the releases app), on every panel.
    mark = {"color": COLOURS["limit"], "width": 1.5, "dash": "dashdot"}
    drawing.shapes += [
        charts.vline(row=row, x=at.isoformat(), line=mark) for row in range(1, len(names) + 1) for at in marks
    ]
    for row, name in enumerate(names, start=1):
        drawing.band(row, t, outcome.band_hi[name], outcome.band_lo[name], name="predicted band")
        predicted = {"color": COLOURS["plan"] if released else COLOURS["hold"], "width": 2, "dash": "dot"}
        drawing.series(row, t, outcome.predicted[name], name=label, group="predicted", line=predicted)
        measured = {"line": {"color": COLOURS["now"], "width": 2}, "marker": {"size": 5}, "mode": "lines+markers"}
        drawing.series(row, t, outcome.measured[name], name="measured", group="measured", **measured)
        drawing.limits(row, (limits or {}).get(name, {}), CV_LIMITS)
    if marks:
        release = {"color": COLOURS["limit"], "dash": "dashdot"}
        drawing.traces.append(_trace(1, x=[None], y=[None], mode="lines", name="release", line=release))
    title = "Measured CVs against the " + ("released plan's prediction" if released else "prediction for holding")
    return _layout(names, units, title, drawing)


# --- KPIs -----------------------------------------------------------------------------------------------------------
def _plain_axes(figure: dict[str, Any], x_type: str = "linear") -> dict[str, Any]:
    """Set the x axes of a themed figure (dates by default) to another type."""
    for key, axis in figure["layout"].items():
        if key.startswith("xaxis") and isinstance(axis, dict):
            axis["type"] = x_type
    return figure


def slots_figure(*, counts: list[tuple[str, int]]) -> dict[str, Any]:
    """Return the period's recommendation slots by what became of them (a proposal, or why there was none)."""
    colours = [charts.CV if label == "proposal" else charts.MUTED for label, _ in counts]
    bars = {"type": "bar", "x": [n for _, n in counts], "y": [label for label, _ in counts], "orientation": "h"}
    figure = charts.themed(
        charts.single(),
        height_px=max(charts.MIN_HEIGHT_PX, 120 + 34 * len(counts)),
        margin={"l": 220},
        title={"text": "Recommendation slots: proposals, and why the others had none", "x": 0.01},
        showlegend=False,
        traces=[{**bars, "marker": {"color": colours}, "name": "slots"}],
    )
    figure["layout"]["yaxis"]["autorange"] = "reversed"
    return _plain_axes(figure)


def error_figure(*, mae: dict[str, list[float | None]], period_s: float, units: dict[str, str]) -> dict[str, Any]:
    """Return each CV's mean absolute prediction error by step ahead (minutes ahead on the x axis)."""
    names = sorted(mae)
    drawing = _Drawing()
    for row, name in enumerate(names, start=1):
        ahead = [period_s * (k + 1) / 60 for k in range(len(mae[name]))]
        line = {"color": COLOURS["plan"], "width": 2}
        style = {"mode": "lines+markers", "line": line, "showlegend": row == 1}
        drawing.traces.append(_trace(row, x=ahead, y=mae[name], name="mean |measured − predicted|", **style))
    figure = _plain_axes(_layout(names, units, "Prediction error by horizon", drawing))
    figure["layout"][f"xaxis{len(names) if len(names) > 1 else ''}"]["title"] = {"text": "minutes ahead"}
    return figure


def _markers(x: list[Any], y: list[Any], *, name: str, colour: str) -> dict[str, Any]:
    return {"type": "scatter", "x": x, "y": y, "mode": "markers", "name": name, "marker": {"color": colour, "size": 8}}


def coverage_figure(*, starts: list[datetime], coverage: list[float | None], compared: list[str]) -> dict[str, Any]:
    """Return each outcome's share of measured CV samples inside the predicted band, over time."""
    traces = []
    for kind, name, colour in (("plan", "released", COLOURS["plan"]), ("hold", "shadow (hold)", COLOURS["hold"])):
        pick = [i for i, c in enumerate(compared) if c == kind]
        x, y = [starts[i].isoformat() for i in pick], [coverage[i] for i in pick]
        traces.append(_markers(x, y, name=name, colour=colour))
    title = {"text": "Band coverage per outcome", "x": 0.01}
    figure = charts.themed(charts.single(), height_px=charts.MIN_HEIGHT_PX, title=title, traces=traces)
    figure["layout"]["yaxis"]["range"] = [-0.05, 1.05]
    figure["layout"]["yaxis"]["tickformat"] = ".0%"
    return figure


def gain_figure(*, points: list[tuple[float, float, str]]) -> dict[str, Any]:
    """Return realized against predicted per outcome: gain per hour (released) or value per hour (shadow, holding)."""
    traces = []
    for kind, name, colour in (
        ("plan", "released: gain per hour vs holding", COLOURS["plan"]),
        ("hold", "shadow: value per hour while holding", COLOURS["hold"]),
    ):
        pick = [(x, y) for x, y, k in points if k == kind]
        traces.append(_markers([x for x, _ in pick], [y for _, y in pick], name=name, colour=colour))
    values = [v for x, y, _ in points for v in (x, y)]
    if values:
        lo, hi = min(values), max(values)
        diagonal = {"x": [lo, hi], "y": [lo, hi], "mode": "lines", "name": "realized = predicted"}
        traces.append({"type": "scatter", **diagonal, "line": {"color": COLOURS["limit"], "dash": "dot", "width": 1}})
    figure = charts.themed(
        charts.single(),
        height_px=charts.CHART_BOX_PX,
        title={"text": "Realized against predicted, currency per hour", "x": 0.01},
        xaxis={"title": {"text": "predicted"}},
        yaxis={"title": {"text": "realized"}},
        traces=traces,
    )
    return _plain_axes(figure)
