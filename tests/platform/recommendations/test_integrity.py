"""Model integrity: the recommender withholds when the measured CVs left what the twin just predicted, naming them."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.test import Client

from twinops.audit.models import AuditEvent
from twinops.recommendations.pages import slot_category
from twinops.recommendations.services import recommendation_create

from .conftest import PERIOD_S, ROWS, T0, TINY, two_tanks

# The lower-level transmitter reads 4 m high (its operating range is 0.2..9 m). The tests' tiny twin's normal scores
# rise from 0.3 to 1.0 band units across its validation periods and its threshold (about 2.6) covers later periods,
# so a 2 m bias (score about 1.3) is within what its normal errors reach.
BIAS_M = 4.0
NOISE_M = 0.4  # a noisy lower-level transmitter: errors well beyond the calibrated band (levels 0.2..9 m)


@pytest.fixture
def promote_old(trained: Any) -> Callable[..., Any]:
    """Register and promote the shared twin as saved before innovation thresholds existed."""
    from twinops.modeling import services

    def make(line: Any) -> Any:
        record, outcome = trained
        old = copy.copy(outcome.twin)
        old.innovation = None  # what an older checkpoint holds
        report = dataclasses.replace(outcome.report, promotable=True, reason="forced promotable in tests")
        job = services.training_job_create(line=line, actor="system:test", config_overrides=TINY, enqueue=False)
        job = services.training_job_claim(job_id=job.pk)
        version = services.twin_version_register(
            job=job, record=record, outcome=dataclasses.replace(outcome, twin=old, report=report)
        )
        return services.twin_promote(version=version, actor="system:test", reason="tests")

    return make


def test_a_cv_sensor_bias_step_withholds_the_proposal_naming_the_cv(
    line: Any,
    promote: Callable[..., Any],
    ingest: Callable[..., datetime],
    client: Client,
    make_user: Callable[..., Any],
) -> None:
    promote(line)
    data = two_tanks(ROWS, seed=1)[-60:]
    data[-3:, 1] += BIAS_M  # the step came three samples ago
    last = ingest(line, data)
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "withheld", rec.reason
    assert rec.result is None and not rec.has_proposal
    found = rec.inputs["innovation"]
    assert found["status"] == "exceeded" and found["cvs"] == ["lower_level_m"]
    assert found["combined"] > found["threshold"]
    lower = found["per_cv"]["lower_level_m"]
    assert rec.reason.startswith(
        "the twin is wrong now: the measured CVs left what it predicted for the last 5 samples "
        f"— lower_level_m {lower['score']:.2f} (threshold {lower['threshold']:.2f}); combined score "
    )
    assert "set for 1 % false alarms on normal data" in rec.reason
    assert "upper_level_m" not in rec.reason
    assert slot_category(rec) == "withheld: twin wrong now"
    assert AuditEvent.objects.filter(
        action="recommendation.withheld", object_id=str(rec.pk), reason=rec.reason
    ).exists()
    make_user("engineer", username="erin")
    assert client.login(username="erin", password="correct-horse-battery")
    page = client.get(f"/recommendations/{line.key}/?id={rec.pk}").content.decode()
    assert "Withheld:</strong> the twin is wrong now" in page
    assert "Recent prediction errors" in page and "lower_level_m" in page


def test_normal_data_pass_the_check_and_the_proposal_shows_the_score(
    ready: Any, client: Client, make_user: Callable[..., Any]
) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    found = rec.inputs["innovation"]
    assert found["status"] == "ok" and found["combined"] <= found["threshold"]
    assert found["summary"].endswith("set for 1 % false alarms on normal data; 1 = the calibrated band's edge)")
    make_user("engineer", username="erin")
    assert client.login(username="erin", password="correct-horse-battery")
    page = client.get(f"/recommendations/{line.key}/?id={rec.pk}").content.decode()
    assert f"Recent prediction errors</dt><dd>{found['combined']:.2f} over the last 5 samples" in page


def test_a_twin_from_before_innovation_thresholds_says_its_errors_are_not_checked(
    line: Any, promote_old: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote_old(line)
    data = two_tanks(ROWS, seed=1)[-60:]
    data[-3:, 1] += BIAS_M  # a fault it cannot see: the OOD check is all that guards it
    last = ingest(line, data)
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status != "failed" and "wrong now" not in rec.reason, rec.reason
    found = rec.inputs["innovation"]
    assert found["status"] == "unavailable"
    assert found["summary"].startswith("not checked: twin v1 was trained before innovation thresholds existed")
    assert "retrain it" in found["summary"]


def test_recent_errors_larger_than_calibrated_widen_the_band_the_plan_is_held_to_and_the_page_says_so(
    line: Any,
    promote: Callable[..., Any],
    ingest: Callable[..., datetime],
    client: Client,
    make_user: Callable[..., Any],
) -> None:
    promote(line)
    data = two_tanks(ROWS, seed=1)[-300:]
    rng = np.random.default_rng(3)
    data[:-6, 1] += rng.normal(0.0, NOISE_M, size=len(data) - 6)  # a noisy transmitter, quiet again just now
    last = ingest(line, data)
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "pending", rec.reason
    band = rec.inputs["band_scale"]
    largest = band["largest"]
    assert largest["lower_level_m"] > 1.5 and largest["lower_level_m"] > largest["upper_level_m"]
    assert "lower_level_m" in band["widened"]
    assert band["summary"].startswith("widened where the twin's recent errors exceed its calibration's: ")
    # the plan was held to the widened band: the result names it, over the plan's steps ahead (1..N)
    steps = len(rec.result["cv_mean"]["lower_level_m"])
    assert rec.result["band_scale"]["lower_level_m"] == pytest.approx(
        max(band["by_cv"]["lower_level_m"][1 : steps + 1])
    )
    assert "widened by the twin's recent prediction errors: " in rec.result["message"]
    make_user("engineer", username="erin")
    assert client.login(username="erin", password="correct-horse-battery")
    page = client.get(f"/recommendations/{line.key}/?id={rec.pk}").content.decode()
    assert "<dt>Band</dt><dd>widened where the twin&#x27;s recent errors exceed its calibration&#x27;s" in page
    most = max(rec.result["band_scale"].values())
    assert f"calibrated 90% interval, widened up to \\u00d7{most:.2f} by its recent errors" in page  # chart title


def test_short_history_widens_from_what_there_is_and_says_so(ready: Any) -> None:
    line, now = ready  # 60 samples stored: fewer than the adaptive band's window
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    assert rec.inputs["band_scale"]["summary"].endswith(
        "(measured from 60 samples of history, fewer than the 120 it reads)"
    )


def test_a_gap_in_the_data_withholds_naming_the_gap_not_a_faulty_sensor_until_the_window_is_past_it(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    data = two_tanks(ROWS, seed=1)[-60:]
    before, after = data[:50], data[50:53].copy()
    after[:, 1] += BIAS_M  # the plant moved on while nothing was stored: the twin's recent predictions are far off
    hole = 6  # sample periods with nothing stored (the collector was down)
    ingest(line, before)
    resumed = T0 + timedelta(seconds=PERIOD_S * (len(before) + hole))
    last = ingest(line, after, start=resumed)
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "withheld" and rec.result is None, rec.reason
    found = rec.inputs["innovation"]
    assert found["status"] == "gap" and found["combined"] > found["threshold"]
    first_missing = T0 + timedelta(seconds=PERIOD_S * len(before))
    assert found["gap"] == {
        "start": first_missing.isoformat(),
        "end": (resumed - timedelta(seconds=PERIOD_S)).isoformat(),
        "samples": hole,
    }
    assert rec.reason.startswith(
        f"a gap in the data: nothing was stored for the twin's tags from {found['gap']['start']}"
    )
    assert "faulty" not in rec.reason and "wrong now" not in rec.reason
    assert slot_category(rec) == "withheld: data gap"
    # The reason says when the check is made again; by then the window is past the gap and the errors are judged.
    clear = datetime.fromisoformat(rec.reason.split("from ")[-1].split(";")[0])
    rows = int((clear - last).total_seconds() / PERIOD_S)
    more = two_tanks(ROWS, seed=1)[-rows:].copy()
    more[:, 1] += BIAS_M
    later = ingest(line, more, start=last + timedelta(seconds=PERIOD_S))
    assert later == clear
    again = recommendation_create(line=line, actor="system:test", now=later + timedelta(seconds=5))
    assert again.pk != rec.pk
    assert again.inputs["innovation"]["status"] != "gap" and "gap" not in again.reason, again.reason


def test_a_single_missed_sample_is_no_gap_and_a_fault_beside_it_is_still_named(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)
    data = two_tanks(ROWS, seed=1)[-60:]
    before, after = data[:57], data[57:].copy()
    after[:, 1] += BIAS_M
    ingest(line, before)
    last = ingest(line, after, start=T0 + timedelta(seconds=PERIOD_S * (len(before) + 1)))  # one sample missed
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "withheld" and rec.reason.startswith("the twin is wrong now"), rec.reason
    assert rec.inputs["innovation"]["status"] == "exceeded"
