"""The ingest service: replays add nothing, bad values are kept with their reason, time is UTC, late data is fine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from twinops.telemetry.batch import RawBatch
from twinops.telemetry.services import history_import, rollups_rebuild, samples_ingest

from .conftest import T0

pytestmark = pytest.mark.django_db


def _batch(n: int = 120) -> RawBatch:
    return RawBatch.from_records(
        [(name, T0 + timedelta(seconds=i), float(i % 50)) for i in range(n) for name in ("T", "F")]
    )


def _rollups(table: str) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT tag_id, bucket, n_good, n_bad, n_out_of_range, min_value, round(avg_value::numeric, 9)::float8, "
            f"max_value FROM {table} ORDER BY 1, 2"
        )
        return cur.fetchall()


def test_replaying_a_batch_adds_no_rows(line, sample_count) -> None:
    first = samples_ingest(line=line, batch=_batch(), source="test", actor=None)
    assert (first.samples_received, first.samples_inserted, first.samples_duplicate) == (240, 240, 0)
    replay = samples_ingest(line=line, batch=_batch(), source="test", actor=None)
    assert (replay.samples_inserted, replay.samples_duplicate) == (0, 240)
    assert sample_count() == 240
    from twinops.telemetry.models import Sample  # the ORM maps the partitioned table for reads

    assert Sample.objects.filter(tag__line=line, tag__name="T", ts__lt=T0 + timedelta(seconds=10)).count() == 10


def test_bad_values_are_stored_as_bad_quality_with_their_reason(line, samples) -> None:
    batch = RawBatch.from_records(
        [
            ("T", T0, float("nan")),
            ("T", T0 + timedelta(seconds=1), float("inf")),
            ("T", T0 + timedelta(seconds=2), "Bad"),
            ("F", T0, "Scan Timeout"),
            ("F", T0 + timedelta(seconds=1), 3.0),
        ]
    )
    result = samples_ingest(line=line, batch=batch, source="test", actor=None)
    assert (result.samples_inserted, result.samples_bad_quality) == (5, 4)
    stored = {(name, ts.second): (value, quality, reason) for name, ts, value, quality, reason in samples(line)}
    assert stored == {
        ("T", 0): (None, 2, "NaN"),
        ("T", 1): (None, 2, "inf"),
        ("T", 2): (None, 2, "Bad"),
        ("F", 0): (None, 2, "Scan Timeout"),
        ("F", 1): (3.0, 0, None),
    }
    assert [r.row for r in result.rejections] == [1, 2, 3, 4]
    assert all(r.reason.startswith("stored as bad quality") for r in result.rejections)


def test_an_unknown_tag_is_rejected_with_a_reason(line, samples) -> None:
    batch = RawBatch.from_records([("T", T0, 1.0), ("pressure", T0, 2.0)])
    result = samples_ingest(line=line, batch=batch, source="test", actor=None)
    assert (result.samples_received, result.samples_inserted, result.samples_rejected) == (2, 1, 1)
    [rejection] = result.rejections
    assert (rejection.row, rejection.column) == (2, "pressure")
    assert "unknown tag 'pressure'" in rejection.reason and "not stored" in rejection.reason
    assert [s[0] for s in samples(line)] == ["T"]


def test_a_value_outside_the_physical_range_is_stored_and_flagged(line, samples) -> None:
    batch = RawBatch.from_records([("T", T0, 250.0), ("F", T0, -1.0), ("T_in", T0, 20.0)])
    result = samples_ingest(line=line, batch=batch, source="test", actor=None)
    assert (result.samples_inserted, result.samples_out_of_range) == (3, 2)
    stored = {name: (value, quality, reason) for name, _, value, quality, reason in samples(line)}
    assert stored == {
        "T": (250.0, 1, "above physical range"),
        "F": (-1.0, 1, "below physical range"),
        "T_in": (20.0, 0, None),
    }


def test_timestamps_with_offsets_are_normalised_to_utc_and_naive_ones_are_utc(line, samples, tmp_path) -> None:
    path = tmp_path / "tz.csv"
    path.write_text(
        "timestamp,T\n2024-03-01T02:00:00+02:00,1\n2024-03-01T00:00:01Z,2\n2024-03-01 00:00:02,3\n"
        "2024-02-29T19:00:03-05:00,4\n"
    )
    history_import(line=line, path=path, filename="tz.csv", actor=None)
    assert [(ts, value) for _, ts, value, _, _ in samples(line)] == [
        (T0 + timedelta(seconds=i), float(i + 1)) for i in range(4)
    ]
    assert all(ts.utcoffset() == timedelta(0) for _, ts, *_ in samples(line))


def test_late_and_out_of_order_samples_are_accepted_and_the_rollups_stay_right(line) -> None:
    records = [("T", T0 + timedelta(seconds=s), float(s)) for s in (50, 10, 130, 70)]  # out of order
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="test", actor=None)
    late = [
        ("T", T0 + timedelta(seconds=5), 100.0),
        ("T", T0 + timedelta(seconds=20), "Bad"),
        ("T", T0 + timedelta(seconds=75), 500.0),
    ]  # a day later, into buckets that already have rollups
    result = samples_ingest(line=line, batch=RawBatch.from_records(late), source="test", actor=None)
    assert result.samples_inserted == 3
    incremental = (_rollups("telemetry_rollup_minute"), _rollups("telemetry_rollup_hour"))
    minute = {row[1]: row[2:] for row in incremental[0]}
    assert minute[T0] == (3, 1, 0, 10.0, round(160 / 3, 9), 100.0)  # 50, 10, 100 good; 'Bad' counted bad
    assert minute[T0 + timedelta(minutes=1)] == (1, 0, 1, 70.0, 70.0, 70.0)  # 500 is out of range
    assert minute[T0 + timedelta(minutes=2)] == (1, 0, 0, 130.0, 130.0, 130.0)
    rollups_rebuild(line=line, start=T0, end=T0 + timedelta(hours=1))
    assert (_rollups("telemetry_rollup_minute"), _rollups("telemetry_rollup_hour")) == incremental


def test_samples_of_different_months_land_in_their_own_partitions(line) -> None:
    batch = RawBatch.from_records(
        [("T", datetime(2023, 12, 31, 23, 59, tzinfo=UTC), 1.0), ("T", datetime(2024, 1, 1, tzinfo=UTC), 2.0)]
    )
    samples_ingest(line=line, batch=batch, source="test", actor=None)
    with connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text, count(*) FROM telemetry_sample GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [("telemetry_sample_p2023_12", 1), ("telemetry_sample_p2024_01", 1)]


def test_the_same_sample_twice_in_one_batch_is_stored_once_and_counted_duplicate(line, samples) -> None:
    batch = RawBatch.from_records([("T", T0, 1.0), ("T", T0, 2.0), ("T", T0 + timedelta(seconds=1), 3.0)])
    result = samples_ingest(line=line, batch=batch, source="test", actor=None)
    assert (result.samples_inserted, result.samples_duplicate) == (2, 1)
    assert [v for _, _, v, _, _ in samples(line)] == [1.0, 3.0]  # the first one wins


def test_new_data_beside_stored_data_takes_the_fast_path_and_keeps_rollups_exact(line) -> None:
    from twinops.telemetry import store

    first = [("T", T0 + timedelta(seconds=s), float(s)) for s in range(0, 90)]
    second = [("T", T0 + timedelta(seconds=s), float(s)) for s in range(90, 200)]  # shares the minute 60-119
    samples_ingest(line=line, batch=RawBatch.from_records(first), source="test", actor=None)
    tag_ids = [r[0] for r in _rollups("telemetry_rollup_minute")]
    t0_us = int(T0.timestamp() * 1e6)
    assert not store.ranges_hold_samples(
        tag_id=np.asarray(tag_ids[:1] * 2), ts_us=np.asarray([t0_us + 90_000_000, t0_us + 199_000_000])
    )
    assert store.ranges_hold_samples(
        tag_id=np.asarray(tag_ids[:1] * 2), ts_us=np.asarray([t0_us + 89_000_000, t0_us + 199_000_000])
    )
    samples_ingest(line=line, batch=RawBatch.from_records(second), source="test", actor=None)
    incremental = _rollups("telemetry_rollup_minute"), _rollups("telemetry_rollup_hour")
    assert {r[1]: r[2] for r in incremental[0]} == {
        T0: 60,
        T0 + timedelta(minutes=1): 60,
        T0 + timedelta(minutes=2): 60,
        T0 + timedelta(minutes=3): 20,
    }
    rollups_rebuild(line=line, start=T0, end=T0 + timedelta(hours=1))
    assert (_rollups("telemetry_rollup_minute"), _rollups("telemetry_rollup_hour")) == incremental


def test_a_key_stored_by_a_concurrent_writer_after_the_check_sends_the_batch_down_the_conflict_path(
    line, monkeypatch, sample_count
) -> None:
    from twinops.telemetry import store

    samples_ingest(line=line, batch=_batch(60), source="test", actor=None)
    before = _rollups("telemetry_rollup_minute")
    monkeypatch.setattr(store, "ranges_hold_samples", lambda **_: False)  # as if the rows landed after the check
    result = samples_ingest(line=line, batch=_batch(120), source="test", actor=None)
    assert (result.samples_inserted, result.samples_duplicate) == (120, 120)
    assert sample_count() == 240
    after = {(r[0], r[1]): r[2] for r in _rollups("telemetry_rollup_minute")}
    assert set(after.values()) == {60} and len(after) == 2 * len(before)  # the first minute was not counted twice
