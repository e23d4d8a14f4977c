"""Twin charts: test-segment forecasts computed once at registration, drawn server-side as Plotly figures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from twinops.core import charts
from twins import Record, TrainingOutcome

PREVIEW_HORIZONS = (1, 5, 20)  # steps ahead drawn on the twin page
PREVIEW_POINTS = 300  # forecast start points kept per horizon (evenly spaced over the test segment)
ACTUAL_POINTS = 1200  # recorded samples kept for the "actual" trace
COLOURS = {"actual": charts.INK, "twin": charts.CV, "band": charts.band(charts.CV), "linear": charts.LIMIT}


def _spaced(rows: np.ndarray, most: int) -> np.ndarray:
    if rows.size <= most:
        return rows
    return rows[np.linspace(0, rows.size - 1, most).round().astype(int)]


def _series(values: np.ndarray, mask: np.ndarray | None = None) -> list[float | None]:
    """Turn a (N,) array into a JSON list, bad or non-finite values as None (a gap in the chart)."""
    ok = np.isfinite(values) if mask is None else (mask & np.isfinite(values))
    return [float(round(v, 6)) if g else None for v, g in zip(values.tolist(), ok.tolist(), strict=True)]


def forecast_preview(outcome: TrainingOutcome, timestamps: Sequence[datetime]) -> dict[str, Any]:
    """Forecast the test segment at each preview horizon (twin with interval, linear baseline); JSON-able."""
    twin, split = outcome.twin, outcome.split
    data, steps = split.dataset, max(PREVIEW_HORIZONS)
    good = data.row_good()
    starts = np.arange(split.val_stop, len(data) - steps)
    starts = _spaced(starts[good[starts]], PREVIEW_POINTS)
    if starts.size == 0:
        return {}
    fc = twin.predict(data, starts, steps)  # mean/lower/upper: (N, steps + 1, n_cv), engineering units
    rec = Record.build(split, twin.norm)
    linear = outcome.linear.forecast(rec, starts, steps) * twin.norm.cv_std + twin.norm.cv_mean  # (N, steps + 1, n_cv)
    shown = _spaced(np.arange(split.val_stop, len(data)), ACTUAL_POINTS)
    iso = [t.isoformat() for t in timestamps]
    names = list(data.cv_names)
    horizons = {}
    for h in PREVIEW_HORIZONS:
        at = starts + h  # the forecast for row s + h, made at row s
        horizons[str(h)] = {
            "t": [iso[i] for i in at],
            **{
                key: {name: _series(arr[:, h, c]) for c, name in enumerate(names)}
                for key, arr in (("mean", fc.mean), ("lower", fc.lower), ("upper", fc.upper), ("linear", linear))
            },
        }
    return {
        "cv": names,
        "sample_period_s": float(data.sample_period_s),
        "actual": {
            "t": [iso[i] for i in shown],
            "y": {name: _series(data.cv[shown, c], data.cv_mask[shown, c]) for c, name in enumerate(names)},
        },
        "horizons": horizons,
    }


def horizon_figure(*, preview: dict[str, Any], horizon: int, units: dict[str, str] | None = None) -> dict[str, Any]:
    """Return a figure (JSON-ready dict) of the h-step-ahead forecast vs actual, one panel per CV, with its band."""
    names, units = preview["cv"], units or {}
    step = preview["horizons"][str(horizon)]
    period = preview.get("sample_period_s", 0.0)
    figure = charts.panels([f"<b>{n}</b>" + (f" [{units[n]}]" if units.get(n) else "") for n in names])
    traces: list[dict[str, Any]] = []  # plain dicts: plotly's objects validate and copy every point
    for row, name in enumerate(names, start=1):
        legend = row == 1
        axes = {"type": "scatter", "mode": "lines", **charts.axis_refs(row)}
        band = {**axes, "x": step["t"], "line": {"width": 0}, "legendgroup": "band"}
        traces += [
            {**band, "y": step["upper"][name], "hoverinfo": "skip", "showlegend": False},
            {**band, "y": step["lower"][name], "fill": "tonexty", "fillcolor": COLOURS["band"]}
            | {"name": "twin interval", "showlegend": legend},
            {**axes, "x": preview["actual"]["t"], "y": preview["actual"]["y"][name], "name": "actual"}
            | {"line": {"color": COLOURS["actual"], "width": 1.2}, "showlegend": legend, "legendgroup": "actual"},
            {**axes, "x": step["t"], "y": step["linear"][name], "name": "linear ARX", "legendgroup": "linear"}
            | {"line": {"color": COLOURS["linear"], "width": 1, "dash": "dot"}, "showlegend": legend},
            {**axes, "x": step["t"], "y": step["mean"][name], "name": "twin", "legendgroup": "twin"}
            | {"line": {"color": COLOURS["twin"], "width": 1.6}, "showlegend": legend},
        ]
    ahead = f" ({horizon * period:g} s)" if period else ""
    return charts.themed(
        figure,
        height_px=charts.height(len(names), header_px=20),
        margin={"t": 70},
        title={"text": f"{horizon} step{'s' if horizon != 1 else ''} ahead{ahead} — test segment", "x": 0.01},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
        traces=traces,
    )


def version_figures(
    *, preview: dict[str, Any], units: dict[str, str] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """Return (horizon, figure) for every horizon in a version's preview."""
    if not preview.get("horizons"):
        return []
    return [(int(h), horizon_figure(preview=preview, horizon=int(h), units=units)) for h in preview["horizons"]]
