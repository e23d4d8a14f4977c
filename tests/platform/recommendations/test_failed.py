"""Failed recommendations: a twin that does not fit the spec or a solver that runs out of time gives no proposal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from twinops.audit.models import AuditEvent
from twinops.recommendations.services import recommendation_create

from .conftest import ROWS, SPEC, T0, two_tanks


def _failed_without_proposal(rec: Any) -> None:
    assert rec.status == "failed"
    assert not rec.has_proposal and rec.expected_gain is None
    assert not (rec.result or {}).get("mv_plan") and not (rec.result or {}).get("first_move")
    assert AuditEvent.objects.filter(action="recommendation.failed", object_id=str(rec.pk)).count() == 1
    assert not AuditEvent.objects.filter(action="recommendation.created").exists()


def test_a_twin_whose_tags_differ_from_the_line_spec_fails_naming_the_tags(
    onboard: Callable[..., Any], promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    line = onboard(SPEC.replace("lower_level_m", "lower_tank_level_m"))
    promote(line)  # trained on upper_level_m, lower_level_m: the line now calls the second one lower_tank_level_m
    rec = recommendation_create(line=line, actor="system:test", now=T0)
    _failed_without_proposal(rec)
    assert rec.reason.startswith("twin v1 does not fit spec v1 of the line: CV tags differ")
    assert "lower_tank_level_m" in rec.reason and "lower_level_m" in rec.reason
    assert rec.result is None  # the solver never ran


def test_a_solver_out_of_time_fails_with_the_optimizers_message(ready: Any, settings: Any) -> None:
    settings.TWINOPS_MPC_SETTINGS = {"max_solver_time_s": 1e-6}
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    _failed_without_proposal(rec)
    assert rec.solver_status == "timeout"
    assert rec.reason.startswith("optimizer timeout: solver budget exhausted (1e-06 s")
    assert rec.result["status"] == "timeout" and rec.result["first_setpoint"] is None
    assert rec.settings["mpc"]["max_solver_time_s"] == 1e-6


def test_an_unknown_optimizer_setting_fails_loudly(ready: Any, settings: Any) -> None:
    settings.TWINOPS_MPC_SETTINGS = {"max_solver_seconds": 1}
    line, now = ready
    with pytest.raises(ImproperlyConfigured, match=r"unknown fields \['max_solver_seconds'\]"):
        recommendation_create(line=line, actor="system:test", now=now)


def test_a_twin_that_steps_at_another_period_than_the_line_fails_saying_so(
    onboard: Callable[..., Any], promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    line = onboard(SPEC.replace("sample_period_s: 10", "sample_period_s: 20"))
    promote(line)
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    _failed_without_proposal(rec)
    assert "the line samples every 20 s but the twin steps 10 s" in rec.reason


def test_a_promoted_twin_whose_checkpoint_is_damaged_fails_saying_so(ready: Any) -> None:
    from twinops.modeling.models import TwinVersion

    line, now = ready
    TwinVersion.objects.filter(line=line).update(checkpoint=b"not a checkpoint", checkpoint_sha256="0" * 64)
    rec = recommendation_create(line=line, actor="system:test", now=now)
    _failed_without_proposal(rec)
    assert rec.reason.startswith("twin v1 cannot be loaded:") and "magic header line is missing" in rec.reason
