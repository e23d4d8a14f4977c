"""Three real data sets onboard end to end: spec + history through the real service and CLI, bad cells kept as bad.

The history files are read in place from ../shared/data and converted here (never copied into the repo) into the
wide CSV the importer takes: a `timestamp` column (ISO 8601, UTC) and one column per tag, cells passed through as
text so that the historian's strings reach the importer untouched.
"""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from twinops.lines.models import Line, SpecVersion, Tag
from twinops.lines.selectors import line_get
from twinops.lines.services import line_onboard

from .conftest import DATA, SPECS

telemetry = pytest.importorskip("twinops.telemetry.services", reason="the telemetry importer has not landed yet")
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data sets not found at {DATA}"),
]

BIBMON_BAD = {"Bad": 340, "Inp OutRange": 156, "Scan Timeout": 2}  # per SOURCE.md, and counted below


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_wide(path: Path, tags: list[str], rows: list[tuple[str, list[str]]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", *tags])
        writer.writerows([ts, *values] for ts, values in rows)
    return path


def daisy_to_wide(out: Path) -> Path:
    """DaISy cstr.dat (whitespace: time in min, q, Ca, T; simulated) -> wide CSV from 2000-01-01T00:00Z."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    rows = []
    for line in (DATA / "daisy_cstr" / "cstr.dat").read_text().splitlines():
        if line.strip():
            t_min, q, ca, temp = line.split()
            rows.append((_iso(start + timedelta(seconds=round(float(t_min) * 60))), [q, ca, temp]))
    return _write_wide(out, ["q", "Ca", "T"], rows)


def cascaded_tanks_to_wide(out: Path) -> Path:
    """dataBenchmark.csv (uEst, uVal, yEst, yVal at Ts = 4 s) -> two records, estimation then validation a day later."""
    with (DATA / "cascaded_tanks" / "dataBenchmark.csv").open(newline="") as fh:
        records = [r for r in csv.DictReader(fh) if r.get("uEst")]
    rows = []
    for record, (u, y) in enumerate((("uEst", "yEst"), ("uVal", "yVal"))):
        start = datetime(2016, 1, 1, tzinfo=UTC) + timedelta(days=record)
        rows += [(_iso(start + timedelta(seconds=4 * i)), [r[u], r[y]]) for i, r in enumerate(records)]
    return _write_wide(out, ["pump_voltage", "lower_tank_level"], rows)


def bibmon_to_wide(out: Path) -> Path:
    """real_process_data.csv.gz: unnamed index column of zone-less timestamps -> `timestamp` in UTC, cells as text."""
    with gzip.open(DATA / "bibmon_real_process" / "real_process_data.csv.gz", "rt", newline="") as fh:
        reader = csv.reader(fh)
        tags = next(reader)[1:]
        rows = [(_iso(datetime.fromisoformat(r[0]).replace(tzinfo=UTC)), r[1:]) for r in reader]
    return _write_wide(out, tags, rows)


def _onboard(name: str, history: Path, actor: object) -> object:
    spec = SPECS / f"{name}.yaml"
    return line_onboard(text=spec.read_text(), filename=spec.name, actor=actor, history_path=history,
                        reason=f"onboard {name} from ../shared/data")


def test_the_daisy_cstr_onboards_with_its_whole_history(tmp_path, data_user) -> None:
    result = _onboard("daisy_cstr", daisy_to_wide(tmp_path / "cstr.csv"), data_user)
    assert result.tags_by_role == {"CV": 2, "MV": 1, "DV": 0}
    h = result.history
    assert h.samples_received == 7500 * 3
    assert h.samples_inserted == 7500 * 3
    assert (h.samples_duplicate, h.samples_bad_quality, h.samples_out_of_range, h.rejections) == (0, 0, 0, [])


def test_the_cascaded_tanks_onboard_with_both_records(tmp_path, data_user) -> None:
    result = _onboard("cascaded_tanks", cascaded_tanks_to_wide(tmp_path / "tanks.csv"), data_user)
    assert result.tags_by_role == {"CV": 1, "MV": 1, "DV": 0}
    h = result.history
    assert h.samples_received == h.samples_inserted == 2 * 1024 * 2
    assert (h.samples_bad_quality, h.samples_out_of_range) == (0, 0)  # 10 V (overflow) is inside the range


def test_bibmon_historian_strings_become_bad_quality_samples_with_their_reason(tmp_path, data_user) -> None:
    history = bibmon_to_wide(tmp_path / "bibmon.csv")
    cells = [c for row in csv.reader(history.open()) for c in row[1:]]
    assert {s: cells.count(s) for s in BIBMON_BAD} == BIBMON_BAD  # the converter passed every string through
    result = _onboard("bibmon_real_process", history, data_user)
    assert result.tags_by_role == {"CV": 0, "MV": 0, "DV": 108}
    h = result.history
    assert h.samples_received == 3169 * 108
    assert h.samples_inserted == 3169 * 108  # bad cells are stored (flagged), not dropped: no silent gap
    assert h.samples_bad_quality == sum(BIBMON_BAD.values())
    reasons = " ".join(r.reason for r in h.rejections)
    assert all(s in reasons for s in BIBMON_BAD)
    first = next(r for r in h.rejections if "Inp OutRange" in r.reason)
    assert (first.row, first.column) in {(1, "tag2"), (2, "tag2")}  # data row 1 (or file line 2), as in the file


def test_a_history_file_with_a_wrong_header_creates_nothing_at_all(tmp_path, data_user, row_counts) -> None:
    history = tmp_path / "wrong.csv"
    history.write_text("time,flow,conc\n2020-01-01T00:00:00Z,1,2\n")
    before = row_counts()
    with pytest.raises(telemetry.HistoryFileError) as caught:
        _onboard("daisy_cstr", history, data_user)
    assert caught.value.problems
    assert row_counts() == before
    assert not Line.objects.filter(key="daisy-cstr").exists()


def test_the_cli_onboards_bibmon_with_a_progress_bar_and_a_rejection_report(tmp_path, data_user) -> None:
    history = bibmon_to_wide(tmp_path / "bibmon.csv")
    out, err = StringIO(), StringIO()
    report = tmp_path / "report.csv"
    call_command("line", "onboard", str(SPECS / "bibmon_real_process.yaml"), "--history", str(history),
                 "--reason", "historian extract", "--as", data_user.username, "--rejections-out", str(report),
                 stdout=out, stderr=err)
    text = out.getvalue()
    assert "108 tags (0 CV, 0 MV, 108 DV)" in text
    assert f"{3169 * 108:,} samples received" in text and f"{sum(BIBMON_BAD.values()):,} bad quality" in text
    assert "100.0%" in err.getvalue() and "bibmon.csv [" in err.getvalue()
    rows = list(csv.DictReader(report.open()))
    assert len(rows) >= sum(BIBMON_BAD.values()) and list(rows[0]) == ["row", "column", "reason"]
    assert sum("Scan Timeout" in r["reason"] for r in rows) == BIBMON_BAD["Scan Timeout"]
    assert f"Rejection report: {report.resolve()}" in text
    line = line_get(key="bibmon-real-process")
    assert Tag.objects.filter(line=line).count() == 108 and SpecVersion.objects.filter(line=line).count() == 1
