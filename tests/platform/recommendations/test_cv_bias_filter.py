"""The proposals' CV bias is filtered sample by sample as bench closedloop evaluates it, across proposals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from optimizer import estimation
from twinops.recommendations import services
from twinops.recommendations.services import recommendation_create

from .conftest import CVS, PERIOD_S, ROWS, two_tanks

SPIKE_M = 0.3  # one noisy reading of the lower level (its operating range is 0.2..9 m)


def test_a_noisy_reading_moves_the_next_proposals_bias_by_alpha_not_the_whole_jump(
    settings: Any, line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    settings.TWINOPS_RECOMMEND_EVERY_S = PERIOD_S  # a proposal per sample: each one filters one new sample
    promote(line)
    data = two_tanks(ROWS + 1, seed=1)[-61:]
    last = ingest(line, data[:60])
    first = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert first.status == "pending", first.reason
    assert first.inputs["cv_bias_filter"]["continued_from"] is None  # no earlier estimate: filtered from the data
    spiked = data[60:].copy()
    spiked[0, 1] += SPIKE_M
    last = ingest(line, spiked, start=last + timedelta(seconds=PERIOD_S))
    second = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert second.status == "pending", second.reason
    record = second.inputs["cv_bias_filter"]
    assert record["continued_from"] == first.pk and record["samples"] == len(CVS) and record["restarted"] == []
    assert record["alpha"] == estimation.BIAS_ALPHA
    before, raw, after = first.inputs["cv_bias"], second.inputs["cv_bias_raw"], second.inputs["cv_bias"]
    for cv in CVS:
        assert after[cv] == pytest.approx(before[cv] + estimation.BIAS_ALPHA * (raw[cv] - before[cv]), abs=1e-6)
    lower = "lower_level_m"
    assert abs(raw[lower] - before[lower]) > SPIKE_M / 2  # the raw bias jumped with the reading ...
    assert abs(after[lower] - before[lower]) < 0.5 * abs(raw[lower] - before[lower])  # ... the plan's bias did not
    assert services.cv_bias_filter is estimation.cv_bias_filter  # the function bench closedloop calls


def test_after_a_long_gap_in_a_cvs_readings_its_bias_restarts_from_the_raw_value(
    settings: Any, line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    settings.TWINOPS_RECOMMEND_EVERY_S = PERIOD_S
    promote(line)
    data = two_tanks(ROWS + 8, seed=1)[-68:]
    last = ingest(line, data[:60])
    first = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert first.status == "pending", first.reason
    gap = 7  # periods the lower-level transmitter read Bad: longer than RESET_AFTER_PERIODS
    assert gap > estimation.RESET_AFTER_PERIODS
    override: dict[tuple[int, str], float | str] = {(i, "lower_level_m"): "Bad" for i in range(gap)}
    last = ingest(line, data[60:], start=last + timedelta(seconds=PERIOD_S), override=override)
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "pending", rec.reason
    record = rec.inputs["cv_bias_filter"]
    assert record["continued_from"] == first.pk and record["restarted"] == ["lower_level_m"]
    assert rec.inputs["cv_bias"]["lower_level_m"] == pytest.approx(rec.inputs["cv_bias_raw"]["lower_level_m"], abs=1e-6)
    assert rec.inputs["cv_bias"]["upper_level_m"] != pytest.approx(rec.inputs["cv_bias_raw"]["upper_level_m"])


def test_a_proposal_a_slot_later_continues_the_last_ones_estimate_over_every_sample_between(
    line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime]
) -> None:
    promote(line)  # default slots of 300 s: 30 samples of 10 s between proposals
    data = two_tanks(ROWS + 30, seed=1)[-90:]
    last = ingest(line, data[:60])
    first = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    last = ingest(line, data[60:], start=last + timedelta(seconds=PERIOD_S))
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))  # the next slot
    assert first.status == "pending", first.reason
    record = rec.inputs["cv_bias_filter"]  # stored whatever the later checks say (this plan's OOD withholds it)
    assert record["continued_from"] == first.pk and record["restarted"] == []
    assert record["samples"] == 30 * len(CVS)  # each sample since the first proposal, once
