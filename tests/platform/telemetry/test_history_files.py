"""History files: structural problems store nothing; garbage rows are reported; real historian data imports."""

from __future__ import annotations

import csv
import gzip
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.db import transaction

from twinops.audit.models import AuditEvent
from twinops.telemetry.services import HistoryFileError, history_import

from .conftest import T0, line_make

pytestmark = pytest.mark.django_db
BIBMON = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "bibmon_real_process" / "real_process_data.csv.gz"
)


def _import(line, path: Path, **kw):
    return history_import(line=line, path=path, filename=path.name, actor=None, **kw)


def test_a_wrong_header_stores_nothing_and_names_each_bad_column(line, tmp_path, sample_count) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("timestamp,T,pressure,t_in\n2024-03-01T00:00:00Z,1,2,3\n")
    events = AuditEvent.objects.count()
    with pytest.raises(HistoryFileError) as caught:
        _import(line, path)
    problems = {(p.row, p.column): p.reason for p in caught.value.problems}
    assert set(problems) == {(1, "pressure"), (1, "t_in")}
    assert "did you mean 'T_in'" in problems[(1, "t_in")]
    assert (sample_count(), AuditEvent.objects.count()) == (0, events)


def test_a_file_without_a_timestamp_column_is_refused(line, tmp_path, sample_count) -> None:
    path = tmp_path / "no_ts.csv"
    path.write_text("when,T\n2024-03-01T00:00:00Z,1\n")
    with pytest.raises(HistoryFileError, match="no timestamp column"):
        _import(line, path)
    assert sample_count() == 0


def test_a_file_that_is_not_utf8_is_refused_with_the_line_of_the_first_bad_byte(line, tmp_path, sample_count) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("timestamp,T,F\n2024-03-01T00:00:00Z,1,2\n2024-03-01T00:00:01Z,1,d\u00e9faut\n".encode("latin-1"))
    with pytest.raises(HistoryFileError) as caught:
        _import(line, path)
    [problem] = caught.value.problems
    assert (problem.row, problem.column) == (3, "F") and "not UTF-8" in problem.reason
    assert sample_count() == 0


def test_garbage_rows_are_reported_and_the_other_rows_stored(line, tmp_path, samples) -> None:
    path = tmp_path / "garbage.csv"
    path.write_text(
        "timestamp,T,F\n2024-03-01T00:00:00Z,1,2\nnot a time,3,4\n2024-03-01T00:00:01Z,5\n\n2024-03-01T00:00:02Z,,6\n"
    )
    result = _import(line, path)
    assert [(r.row, r.column) for r in result.rejections] == [(3, "timestamp"), (4, "")]
    assert "unparseable timestamp 'not a time'" in result.rejections[0].reason
    assert "wrong number of columns (2, expected 3)" in result.rejections[1].reason
    assert [(name, ts, value) for name, ts, value, _, _ in samples(line)] == [
        ("F", T0, 2.0),
        ("F", T0 + timedelta(seconds=2), 6.0),
        ("T", T0, 1.0),
    ]  # the empty cell is no sample
    assert (result.samples_received, result.samples_inserted, result.samples_rejected) == (5, 3, 2)


def test_an_unreadable_parquet_file_stores_nothing(line, tmp_path, sample_count) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table(
            {"timestamp": pa.array([T0] * 1000, pa.timestamp("us", tz="UTC")), "T": pa.array(range(1000), pa.float64())}
        ),
        good,
    )
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(HistoryFileError, match="not a readable Parquet file"):
        _import(line, broken)
    assert sample_count() == 0


def test_a_long_parquet_file_imports_with_unknown_tags_rejected(line, tmp_path, samples) -> None:
    path = tmp_path / "long.parquet"
    pq.write_table(
        pa.table(
            {
                "ts": pa.array(["2024-03-01T00:00:00Z", "2024-03-01T01:00:00+01:00", "2024-03-01T00:00:01Z"]),
                "tag": ["T", "F", "pressure"],
                "value": pa.array(["1.5", "Bad", "3"]),
            }
        ),
        path,
    )
    result = _import(line, path)
    assert (result.samples_inserted, result.samples_bad_quality, result.samples_rejected) == (2, 1, 1)
    assert [(n, ts, v, q, r) for n, ts, v, q, r in samples(line)] == [
        ("F", T0, None, 2, "Bad"),
        ("T", T0, 1.5, 0, None),
    ]


def test_an_invalid_file_inside_an_outer_transaction_leaves_nothing_behind(line, tmp_path, sample_count) -> None:
    from twinops.lines.models import Line

    path = tmp_path / "bad.csv"
    path.write_text("timestamp,T\n2024-03-01T00:00:00Z,1\n")
    with pytest.raises(HistoryFileError), transaction.atomic():  # like onboarding: the line and its history at once
        other = line_make("other", {"X": ("CV", 0, 1)})
        _import(other, path)
    assert not Line.objects.filter(key="other").exists() and sample_count() == 0


def test_progress_is_reported_per_chunk_up_to_the_row_count(line, tmp_path, monkeypatch) -> None:
    from twinops.telemetry import files

    monkeypatch.setattr(files, "BLOCK_BYTES", 4096)
    path = tmp_path / "long.csv"
    with path.open("w") as fh:
        fh.write("timestamp,T,F\n")
        for i in range(2000):
            fh.write(f"{(T0 + timedelta(seconds=i)).isoformat()},{i % 100},{i % 40}\n")
    calls: list[tuple[int, int]] = []
    result = _import(line, path, on_progress=lambda done, total: calls.append((done, total)))
    assert result.samples_inserted == 4000
    assert len(calls) > 10 and calls[0] == (0, 2000) and calls[-1] == (2000, 2000)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_history_import_writes_one_audit_event_with_the_file_hash(line, tmp_path) -> None:
    import hashlib

    path = tmp_path / "h.csv.gz"
    path.write_bytes(gzip.compress(b"timestamp,T\n2024-03-01T00:00:00Z,1\n"))
    _import(line, path)
    event = AuditEvent.objects.get(action="history.imported")
    assert event.after["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (event.after["filename"], event.after["samples_inserted"]) == ("h.csv.gz", 1)


@pytest.mark.skipif(not BIBMON.is_file(), reason="shared data set not found")
def test_the_bibmon_real_data_imports_with_its_historian_strings_as_bad_samples(samples, tmp_path) -> None:
    with gzip.open(BIBMON, "rt", newline="") as fh:
        header = next(csv.reader(fh))
    line = line_make("bibmon", {name: ("DV", -1e6, 1e6) for name in header[1:]}, period_s=300)
    result = _import(line, BIBMON)  # read in place: gzip'd CSV, unnamed naive-time index column
    assert result.samples_received == result.samples_inserted == 3169 * 108
    assert result.samples_bad_quality == 340 + 156 + 2
    reasons: dict[str, int] = {}
    for _, _, value, quality, reason in samples(line):
        if quality == 2:
            assert value is None
            reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == {"Bad": 340, "Inp OutRange": 156, "Scan Timeout": 2}
    first = result.rejections[0]
    assert (first.row, first.column, first.reason) == (2, "tag2", "stored as bad quality: Inp OutRange")
