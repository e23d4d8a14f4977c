"""The proposal and outcome figures: each CV's band, prediction, holding line and limits on that CV's own panel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from twinops.core.charts import figure_json
from twinops.recommendations import plots

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
STEPS = 6
PLAN = {
    "sample_period_s": 30,
    "horizon": STEPS,
    "cv_mean": {"level_m": [5.0] * STEPS, "temp_c": [70.0] * STEPS},
    "cv_lo": {"level_m": [4.0] * STEPS, "temp_c": [68.0] * STEPS},
    "cv_hi": {"level_m": [6.0] * STEPS, "temp_c": [72.0] * STEPS},
    "cv_hold_mean": {"level_m": [5.5] * STEPS, "temp_c": [71.0] * STEPS},
    "mv_plan": {"pump_m3_h": [1.1, 1.2, 1.2, 1.2, 1.2, 1.2]},
}
LIMITS = {"level_m": {"low": 0.2, "high": 9.0, "safety_high": 60.0}, "temp_c": {"low": 20.0}, "pump_m3_h": {"high": 2}}


def _sent(figure: dict[str, Any]) -> dict[str, Any]:
    """Return the figure as the browser receives it."""
    return json.loads(str(figure_json(figure)))


def _on_panel(figure: dict[str, Any], row: int) -> list[dict[str, Any]]:
    axis = "y" if row == 1 else f"y{row}"
    return [t for t in figure["data"] if t.get("yaxis") == axis]


def _lines_at(figure: dict[str, Any], row: int) -> set[float]:
    axis = "y" if row == 1 else f"y{row}"
    return {s["y0"] for s in figure["layout"]["shapes"] if s["yref"] == axis}


def test_each_cv_panel_has_its_band_filled_between_its_edges_its_prediction_holding_line_and_limits() -> None:
    figure = _sent(
        plots.cv_figure(
            result=PLAN, start=START, limits=LIMITS, units={"level_m": "m"}, band="90 %", current={"level_m": 5.2}
        )
    )
    titles = [a["text"] for a in figure["layout"]["annotations"] if a.get("xref") == "paper"]
    assert titles == ["<b>level_m</b> [m]", "<b>temp_c</b>"]
    for row, name in enumerate(["level_m", "temp_c"], start=1):
        traces = _on_panel(figure, row)
        upper = next(i for i, t in enumerate(traces) if t["y"] == PLAN["cv_hi"][name])
        lower = traces[upper + 1]  # filled "tonexty": up to the trace drawn just before it, the upper edge
        assert lower["y"] == PLAN["cv_lo"][name] and lower["fill"] == "tonexty"
        named = {t.get("name"): t["y"] for t in traces}
        assert named["predicted under the plan"] == PLAN["cv_mean"][name]
        assert named["holding setpoints"] == PLAN["cv_hold_mean"][name]
        assert all(len(t["x"]) == len(t["y"]) for t in traces)
    assert _lines_at(figure, 1) == {0.2, 9.0, 60.0} and _lines_at(figure, 2) == {20.0}
    assert [t["y"] for t in _on_panel(figure, 1) if t.get("name") == "now (twin)"] == [[5.2]]
    legend = [t["name"] for t in figure["data"] if t.get("showlegend", True) and t.get("name")]
    assert sorted(legend) == sorted(set(legend))  # each kind once in the legend, not once per panel
    assert {"uncertainty band", "operating limit", "safety limit"} <= set(legend)
    assert "band: 90 %" in figure["layout"]["title"]["text"]


def test_the_mv_plan_steps_from_the_current_setpoint_with_its_limit() -> None:
    figure = _sent(plots.mv_figure(result=PLAN, start=START, limits=LIMITS, units={}, current={"pump_m3_h": 1.0}))
    plan = next(t for t in figure["data"] if t.get("name") == "planned setpoint")
    assert plan["y"] == [1.0, *PLAN["mv_plan"]["pump_m3_h"], 1.2] and plan["line"]["shape"] == "hv"
    assert plan["x"][1] == START.isoformat()  # the first move applies now
    assert _lines_at(figure, 1) == {2}


def test_the_outcome_marks_the_release_on_every_panel_against_the_band_and_the_measurements() -> None:
    outcome = SimpleNamespace(
        start=START,
        period_s=30,
        horizon=STEPS,
        compared_with="plan",
        predicted=PLAN["cv_mean"],
        band_lo=PLAN["cv_lo"],
        band_hi=PLAN["cv_hi"],
        measured={"level_m": [5.1, None, 5.3, 5.2, 5.0, 4.9], "temp_c": [70.0] * STEPS},
    )
    figure = _sent(plots.outcome_figure(outcome=outcome, units={}, marks=[START], limits=LIMITS))
    marks = [(s["xref"], s["x0"]) for s in figure["layout"]["shapes"] if s.get("x0") == s.get("x1")]
    assert marks == [("x", START.isoformat()), ("x2", START.isoformat())]
    measured = [t for t in _on_panel(figure, 1) if t.get("name") == "measured"]
    assert measured[0]["y"] == outcome.measured["level_m"]  # a gap where nothing was measured
    assert {"predicted band", "predicted under the released plan", "release"} <= {t.get("name") for t in figure["data"]}
    assert _lines_at(figure, 1) == {0.2, 9.0}


def test_a_figure_changed_after_it_is_built_leaves_the_next_one_as_it_was() -> None:
    first = plots.cv_figure(result=PLAN, start=START, limits=LIMITS, units={}, band="x")
    first["layout"]["xaxis"]["range"] = [0, 1]
    first["layout"]["annotations"][0]["text"] = "changed"
    second = plots.cv_figure(result=PLAN, start=START, limits=LIMITS, units={}, band="x")
    assert "range" not in second["layout"]["xaxis"] and second["layout"]["annotations"][0]["text"] == "<b>level_m</b>"
    assert second["layout"]["template"]["layout"]["font"] == {"color": "#2a3f5f"}  # plotly's defaults, untouched
