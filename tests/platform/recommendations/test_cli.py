"""`twinops recommend LINE --json` on the command line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from twinops.recommendations.models import Recommendation

from .conftest import PERIOD_S, ROWS, two_tanks


def test_recommend_json_prints_status_first_moves_gain_and_predicted_cvs(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    ingest(line, two_tanks(ROWS, seed=1)[-60:], start=timezone.now() - timedelta(seconds=PERIOD_S * 59 + 1))
    out = io.StringIO()
    call_command("recommend", "tanks", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    rec = Recommendation.objects.get(line=line)
    assert (printed["id"], printed["status"], printed["reason"]) == (rec.pk, "pending", "")
    move = printed["first_moves"]["pump_flow_m3_h"]
    assert move["proposed"] == rec.result["first_setpoint"]["pump_flow_m3_h"]
    assert move["current"] + move["move"] == pytest.approx(move["proposed"])
    assert printed["expected_gain_per_h"] == rec.expected_gain
    assert set(printed["predicted_cv"]) == {"upper_level_m", "lower_level_m"}
    band = printed["predicted_cv"]["lower_level_m"]
    assert len(band["mean"]) == 10 and all(
        lo <= m <= hi for lo, m, hi in zip(band["low"], band["mean"], band["high"], strict=True)
    )
    assert rec.created_by_label == "system:cli"


def test_recommend_json_prints_the_reason_when_withheld(line: Any) -> None:
    out = io.StringIO()
    call_command("recommend", "tanks", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert (printed["status"], printed["reason"], printed["first_moves"]) == ("withheld", "no promoted twin", {})
    assert printed["expected_gain_per_h"] is None


def test_recommend_refuses_an_unknown_line(db: None) -> None:
    with pytest.raises(CommandError, match="no line 'nope'"):
        call_command("recommend", "nope", "--json", stdout=io.StringIO())
