"""Proposals forecast each DV over the horizon from the twin's training history, and say how; gaps mean hold."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from twinops.recommendations.services import recommendation_create

from .conftest import CVS, DV, MV, ROWS, two_tanks

TOL = 1e-6


def _assert_plan_inside_hard_limits(rec: Any) -> None:
    plan = rec.result["mv_plan"][MV]
    assert all(0.6 - TOL <= u <= 1.4 + TOL for u in plan)
    assert max(rec.result["cv_hi"][CVS[0]]) <= 60.0  # the upper level's safety limit


def test_a_dv_whose_history_has_gaps_is_held_at_its_last_good_value_saying_why(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    gaps: dict[tuple[int, str], float | str] = {(i, DV): "Bad" for i in range(1, ROWS - 10, 2)}  # every other one
    last = ingest(line, two_tanks(ROWS, seed=1), override=gaps)  # the twin's whole training window, DV full of gaps
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "pending", rec.reason
    forecast = rec.inputs["dv_forecast"][DV]
    assert forecast["method"] == "hold"
    assert forecast["why"].startswith("held: ") and "pairs of consecutive good samples to fit on" in forecast["why"]
    assert forecast["values"] == [rec.inputs["current_dv"][DV]] * rec.settings["mpc"]["horizon"]
    _assert_plan_inside_hard_limits(rec)


def test_the_proposal_records_the_forecast_it_planned_with(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    last = ingest(line, two_tanks(ROWS, seed=1))
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "pending", rec.reason
    forecast, now = rec.inputs["dv_forecast"][DV], rec.inputs["current_dv"][DV]
    assert forecast["method"] in ("hold", "decay (lag-1)", "decay (multi-lag)") and forecast["why"]
    mean, phi = forecast["mean"], forecast["phi"]
    expected = [mean + phi**k * (now - mean) for k in range(1, rec.settings["mpc"]["horizon"] + 1)]
    assert forecast["values"] == pytest.approx(expected)
    _assert_plan_inside_hard_limits(rec)
