"""Reads: aligned training windows with masks, charts from rollups for long ranges, quality summaries."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from twinops.lines.models import Tag
from twinops.telemetry.batch import RawBatch
from twinops.telemetry.selectors import chart_series, quality_summary, training_window
from twinops.telemetry.services import samples_ingest

from .conftest import T0

pytestmark = pytest.mark.django_db


def _ingest(line, records) -> None:
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="test", actor=None)


def test_a_training_window_is_aligned_with_a_mask_of_good_buckets(line) -> None:
    records = [("T", T0 + timedelta(seconds=s), float(s)) for s in range(0, 30)]
    records += [("F", T0 + timedelta(seconds=s), 1.0) for s in range(0, 10)]  # F: first bucket only
    records += [("F", T0 + timedelta(seconds=15), "Bad"), ("T_in", T0 + timedelta(seconds=25), 500.0)]
    _ingest(line, records)
    window = training_window(line=line, start=T0, end=T0 + timedelta(seconds=30), period_s=10)
    assert window.tags == ("T", "F", "T_in") and window.roles == ("CV", "MV", "DV")
    assert window.values.shape == window.mask.shape == (3, 3)
    assert window.timestamps == [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)]
    assert window.mask.tolist() == [[True, True, False], [True, False, False], [True, False, False]]
    np.testing.assert_allclose(window.values[:, 0], [4.5, 14.5, 24.5])  # bucket averages
    assert window.values[0, 1] == 1.0 and np.isnan(window.values[1:, 1]).all()  # 'Bad' and out of range: masked


def test_a_training_window_without_bounds_spans_the_data_at_the_line_period(line) -> None:
    _ingest(line, [("T", T0 + timedelta(seconds=s), 1.0) for s in (3, 7)])
    window = training_window(line=line)
    assert window.period_s == 1.0 and window.values.shape == (5, 3)
    assert window.timestamps[0] == T0 + timedelta(seconds=3) and window.mask[:, 0].tolist() == [1, 0, 0, 0, 1]


def test_a_long_chart_range_is_read_from_rollups_and_a_short_one_from_raw_samples(line) -> None:
    seconds = np.arange(0, 2 * 86400, 1)
    values = 50 + 10 * np.sin(seconds / 600)
    _ingest(line, [("T", T0 + timedelta(seconds=int(s)), float(v)) for s, v in zip(seconds, values, strict=True)])
    tag = Tag.objects.get(line=line, name="T")

    day = chart_series(tag=tag, start=T0, end=T0 + timedelta(days=1), max_points=2000)
    assert (day.source, day.resolution, day.bucket_s, len(day.times)) == ("rollup_minute", "1 min", 60, 1440)
    assert day.values[10] == pytest.approx(values[600:660].mean())
    assert day.mins[10] == pytest.approx(values[600:660].min()) and day.maxs[10] == pytest.approx(values[600:660].max())

    two_days = chart_series(tag=tag, start=T0, end=T0 + timedelta(days=2), max_points=500)
    assert (two_days.source, two_days.resolution) == ("rollup_minute", "10 min") and len(two_days.times) == 288
    assert two_days.values[3] == pytest.approx(values[1800:2400].mean())

    week = chart_series(tag=tag, start=T0 - timedelta(days=5), end=T0 + timedelta(days=2), max_points=100)
    assert (week.source, week.resolution) == ("rollup_hour", "2 h") and len(week.times) == 24

    short = chart_series(tag=tag, start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=1, minutes=30))
    assert (short.source, short.resolution, short.mins) == ("raw", "raw", None) and len(short.times) == 1800
    assert short.values[0] == pytest.approx(values[3600])


def test_the_quality_summary_counts_each_kind_and_names_the_frequent_reasons(line) -> None:
    records = [("T", T0 + timedelta(seconds=s), 10.0) for s in range(100)]
    records += [("T", T0 + timedelta(seconds=100 + s), "Bad") for s in range(3)]
    records += [("T", T0 + timedelta(seconds=200), "Scan Timeout"), ("T", T0 + timedelta(seconds=201), 900.0)]
    _ingest(line, records)
    summary = {q.tag: q for q in quality_summary(line=line)}
    t = summary["T"]
    assert (t.good, t.bad, t.out_of_range) == (100, 4, 1)
    assert (t.first_time, t.last_time) == (T0, T0 + timedelta(seconds=201))
    assert t.top_reasons == [("Bad", 3), ("Scan Timeout", 1), ("above physical range", 1)]
    assert summary["F"].last_time is None and summary["F"].good == 0
    part = {
        q.tag: q for q in quality_summary(line=line, start=T0 + timedelta(seconds=50), end=T0 + timedelta(seconds=150))
    }
    assert (part["T"].good, part["T"].bad, part["T"].top_reasons) == (50, 3, [("Bad", 3)])
