"""Withheld recommendations: the reason names what cannot be trusted, and no optimizer result is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from twinops.audit.models import AuditEvent
from twinops.recommendations.services import recommendation_create

from .conftest import ROWS, two_tanks


def _withheld(rec: Any) -> None:
    assert rec.status == "withheld"
    assert rec.result is None and rec.expected_gain is None and not rec.has_proposal
    assert (
        AuditEvent.objects.filter(action="recommendation.withheld", object_id=str(rec.pk), reason=rec.reason).count()
        == 1
    )


def test_it_withholds_when_the_newest_good_sample_is_older_than_three_sample_periods(ready: Any) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now + timedelta(seconds=60))
    _withheld(rec)
    assert rec.reason.startswith("data are stale (limit 30 s = 3 sample periods)")
    assert "newest good sample of upper_level_m is 65 s old" in rec.reason


def test_fresh_data_two_periods_old_are_not_stale(ready: Any) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now + timedelta(seconds=15))
    assert rec.status == "pending", rec.reason


def test_it_withholds_when_a_current_cv_sample_has_bad_quality_and_names_the_tag(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:], override={(-1, "lower_level_m"): "Scan Timeout"})
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    _withheld(rec)
    assert "current CV sample of lower_level_m has bad quality (Scan Timeout)" in rec.reason
    assert "upper_level_m" not in rec.reason
    assert rec.inputs["latest"]["lower_level_m"]["quality"] == "bad"


def test_it_withholds_when_the_twin_sees_data_far_outside_its_training_range(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    data = two_tanks(ROWS, seed=1)[-60:]
    data[:, :2] += 40.0  # both tanks ten times higher than anything in training (within the physical range) …
    data[:, 3] = 3.0  # … and a leak fifteen times the largest one seen
    last = ingest(line, data)
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    _withheld(rec)
    assert "the twin's OOD score" in rec.reason and "exceeds 3" in rec.reason
    assert rec.inputs["ood_score"] > 10.0
    assert f"{rec.inputs['ood_score']:.2f}" in rec.reason


def test_a_lower_spread_limit_withholds_with_the_spread_per_cv(ready: Any, settings: Any) -> None:
    settings.TWINOPS_RECOMMEND_MAX_SPREAD = 1e-6
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    _withheld(rec)
    assert "ensemble spread exceeds 1e-06 CV standard deviations: upper_level_m" in rec.reason


def test_it_withholds_when_no_twin_is_promoted(line: Any, ingest: Callable[..., datetime]) -> None:
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    _withheld(rec)
    assert rec.reason == "no promoted twin" and rec.twin_version is None


@pytest.mark.parametrize("value", ["soon", "-5", "0"])
def test_a_bad_ttl_setting_fails_loudly(ready: Any, settings: Any, value: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.TWINOPS_RECOMMENDATION_TTL_S = value
    line, now = ready
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_RECOMMENDATION_TTL_S must be"):
        recommendation_create(line=line, actor="system:test", now=now)
