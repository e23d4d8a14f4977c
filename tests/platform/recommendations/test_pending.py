"""A recommendation with a plan when the data are fresh and the twin is promoted."""

from __future__ import annotations

from typing import Any

from twinops.audit.models import AuditEvent
from twinops.recommendations.services import recommendation_create

TOL = 1e-6


def test_fresh_data_and_a_promoted_twin_give_a_pending_plan_inside_every_mv_limit(ready: Any) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    assert rec.has_proposal and rec.solver_status == "optimal"
    plan = rec.result["mv_plan"]["pump_flow_m3_h"]
    current = rec.inputs["current_mv"]["pump_flow_m3_h"]
    assert all(0.6 - TOL <= u <= 1.4 + TOL for u in plan)
    moves = [b - a for a, b in zip([current, *plan[:-1]], plan, strict=True)]
    assert max(abs(m) for m in moves) <= 0.05 + TOL
    assert rec.result["first_setpoint"]["pump_flow_m3_h"] == plan[0]
    assert set(rec.result["cv_mean"]) == {"upper_level_m", "lower_level_m"}
    assert rec.expected_gain == rec.result["objective_gain"] and rec.expected_gain is not None
    assert rec.twin_version.version == 1 and rec.spec_version.version == 1
    assert len(rec.inputs_sha256) == 64 and rec.window_end < now
    assert (rec.expires_at - rec.created_at).total_seconds() == 900
    assert rec.settings["mpc"]["horizon"] == 10 and rec.settings["thresholds"]["max_ood"] == 3.0
    event = AuditEvent.objects.get(action="recommendation.created", object_id=str(rec.pk))
    assert event.after["first_move"] == rec.result["first_move"]


def test_the_plan_is_corrected_by_the_twins_current_error_on_each_cv(ready: Any) -> None:
    """Offset-free MPC: a twin that misreads a CV now is assumed to misread it the same way over the horizon."""
    import pytest

    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    raw, estimate, latest = rec.inputs["cv_bias_raw"], rec.inputs["current_cv_estimate"], rec.inputs["latest"]
    assert set(raw) == set(rec.inputs["cv_bias"]) == {"upper_level_m", "lower_level_m"}
    for cv, offset in raw.items():
        assert offset == pytest.approx(latest[cv]["good_value"] - estimate[cv])
    assert any(abs(offset) > 1e-9 for offset in rec.inputs["cv_bias"].values())  # a learned twin is never exact
