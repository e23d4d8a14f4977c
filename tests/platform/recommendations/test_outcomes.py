"""Outcomes: after a shadow or released proposal's horizon, what the plant did against what the twin predicted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from twinops.audit.models import AuditEvent
from twinops.lines.services import line_mode_set
from twinops.recommendations.models import Outcome, Recommendation
from twinops.recommendations.services import outcomes_record, recommendation_create

from .conftest import CVS, DV, MV, PERIOD_S

P = timedelta(seconds=PERIOD_S)


def _rows(upper: list[float], lower: list[float], mv: list[float], dv: float) -> np.ndarray:
    """Return rows (T, 4) of the two tanks: upper, lower level, pump, leak."""
    return np.column_stack([upper, lower, mv, [dv] * len(upper)])


@pytest.fixture
def shadow(ready: Any) -> tuple[Any, Recommendation, datetime]:
    """Return the line in shadow mode, its shadow proposal and when the data it started from ended."""
    line, now = ready
    line = line_mode_set(line=line, mode="shadow", actor="system:test", reason="commissioning")
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == Recommendation.Status.SHADOW and rec.has_proposal
    return line, rec, rec.window_end


def _hold_measurements(rec: Recommendation) -> tuple[list[float], list[float], list[float]]:
    """Return upper levels on the hold prediction, lower levels 1 m outside the band on the first half, and offsets."""
    r = rec.result
    half = [(hi - lo) / 2 for lo, hi in zip(r["cv_lo"]["lower_level_m"], r["cv_hi"]["lower_level_m"], strict=True)]
    n = r["horizon"]
    offsets = [half[k] + 1.0 if k < n // 2 else 0.0 for k in range(n)]
    upper = list(r["cv_hold_mean"]["upper_level_m"])
    lower = [m + o for m, o in zip(r["cv_hold_mean"]["lower_level_m"], offsets, strict=True)]
    return upper, lower, offsets


def test_a_shadow_proposal_is_measured_against_holding_once_its_horizon_has_passed(
    shadow: Any, ingest: Callable[..., datetime]
) -> None:
    line, rec, start = shadow
    n = rec.result["horizon"]
    upper, lower, offsets = _hold_measurements(rec)
    held = rec.inputs["current_mv"][MV]
    # CV k is due at start + (k+1)·period; the plant held the pump where it was.
    ingest(line, _rows(upper, lower, [held] * n, rec.inputs["current_dv"][DV]), start=start + P)

    assert outcomes_record(now=start + n * P) == 0  # the horizon has not passed yet
    assert not Outcome.objects.exists()
    due = start + (n + 3) * P + timedelta(seconds=1)
    assert outcomes_record(now=due) == 1

    out = Outcome.objects.get(recommendation=rec)
    assert out.compared_with == "hold" and "not applied" in out.note
    assert out.error["upper_level_m"] == pytest.approx([0.0] * n, abs=1e-9)
    assert out.error["lower_level_m"] == pytest.approx(offsets, abs=1e-9)
    assert out.coverage_by_cv == pytest.approx({"upper_level_m": 1.0, "lower_level_m": 0.5})
    assert out.coverage == pytest.approx(0.75) and out.measured_share == 1.0
    # Value per hour of the spec's objective (4 · lower level - pump flow), measured against predicted for holding.
    hold_value = np.mean([4 * v - held for v in rec.result["cv_hold_mean"]["lower_level_m"]])
    assert out.predicted_value_per_h == pytest.approx(hold_value, rel=1e-9)
    assert out.predicted_value_per_h == pytest.approx(rec.result["objective_hold"], rel=1e-6)  # the optimizer's own
    assert out.realized_value_per_h == pytest.approx(hold_value + 4 * np.mean(offsets), rel=1e-9)
    assert out.realized_gain_per_h is None  # a plan that was not applied earned nothing
    assert out.mv_deviation == pytest.approx({MV: 0.0}, abs=1e-9)

    event = AuditEvent.objects.get(action="recommendation.outcome_recorded")
    assert event.object_id == str(rec.pk) and event.after["coverage"] == pytest.approx(0.75)

    assert outcomes_record(now=due + timedelta(minutes=5)) == 0  # recorded once
    assert Outcome.objects.count() == 1
    assert AuditEvent.objects.filter(action="recommendation.outcome_recorded").count() == 1


def test_a_released_proposal_is_measured_against_its_plan_from_the_release(
    ready: Any, ingest: Callable[..., datetime]
) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == Recommendation.Status.PENDING
    released = rec.window_end + 3 * P
    Recommendation.objects.filter(pk=rec.pk).update(status="approved", decided_at=released, released_at=released)
    r, n = rec.result, rec.result["horizon"]
    # The plant followed the plan and the CVs landed exactly on the prediction.
    upper = [r["cv_hold_mean"]["upper_level_m"][0], *r["cv_mean"]["upper_level_m"]]
    lower = [r["cv_hold_mean"]["lower_level_m"][0], *r["cv_mean"]["lower_level_m"]]
    pump = [*r["mv_plan"][MV], r["mv_plan"][MV][-1]]
    ingest(line, _rows(upper, lower, pump, rec.inputs["current_dv"][DV]), start=released)

    assert outcomes_record(now=released + n * P) == 0
    assert outcomes_record(now=released + (n + 3) * P + timedelta(seconds=1)) == 1
    out = Outcome.objects.get(recommendation=rec)
    assert out.compared_with == "plan" and out.start == released
    for cv in CVS:
        assert out.error[cv] == pytest.approx([0.0] * n, abs=1e-9)
    assert out.coverage == 1.0
    assert out.predicted_gain_per_h == pytest.approx(rec.expected_gain, rel=1e-6)
    assert out.realized_gain_per_h == pytest.approx(out.predicted_gain_per_h, rel=1e-9)


def test_a_pending_or_rejected_proposal_gets_no_outcome(ready: Any, ingest: Callable[..., datetime]) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    later = now + timedelta(hours=2)
    assert outcomes_record(now=later) == 0  # pending: not released, not shadow
    Recommendation.objects.filter(pk=rec.pk).update(status="rejected", decided_at=now)
    assert outcomes_record(now=later) == 0
    assert not Outcome.objects.exists()


def test_an_outcome_with_no_measurement_says_so(shadow: Any) -> None:
    line, rec, start = shadow
    n = rec.result["horizon"]
    assert outcomes_record(now=start + (n + 4) * P) == 1  # the collector stopped: nothing after the proposal
    out = Outcome.objects.get(recommendation=rec)
    assert out.coverage is None and out.measured_share == 0.0
    assert "no CV was measured" in out.note
    assert all(e is None for e in out.error["upper_level_m"])


def test_a_setpoint_written_inside_its_bucket_is_as_assumed_and_only_a_value_off_the_plan_is_a_deviation() -> None:
    from datetime import UTC

    from twinops.recommendations import outcomes

    plan = [1.0, 1.2, 1.4, 1.4]  # from 0.8: each step written at its start, while its bucket still held the last one
    prediction = outcomes.Prediction(
        outcomes.PLAN, datetime(2026, 1, 1, tzinfo=UTC), 10.0, 4, {}, {}, {}, {"u": plan}, None, None,
        mv_before={"u": 0.8},
    )  # fmt: skip
    followed = [0.9, 1.1, 1.3, 1.4, None]  # bucket means halfway: the plan, written on time
    assert outcomes.outcome_compare(
        prediction=prediction, measured=outcomes.Measured({"u": followed}), spec={}
    ).mv_deviation == {"u": pytest.approx(0.0)}
    moved = [0.9, 1.1, 1.7, 1.4, None]  # someone took it to 1.7 during step 2
    assert outcomes.outcome_compare(
        prediction=prediction, measured=outcomes.Measured({"u": moved}), spec={}
    ).mv_deviation == {"u": pytest.approx(0.3)}
