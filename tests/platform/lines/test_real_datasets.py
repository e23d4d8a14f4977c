"""Three real data sets onboard end to end: spec + history through the real service and CLI, bad cells kept as bad.

The history files are read in place from ../shared/data, never copied into the repo. DaISy's whitespace .dat and the
cascaded tanks' two-record CSV are converted here into the wide CSV the importer takes (a `timestamp` column in
ISO 8601 UTC and one column per tag). BibMon's gzip CSV fits as it is (an unnamed first column of zone-less
timestamps, read as UTC, then a column per tag), so it is imported straight from the shared file.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import QuerySet

from twinops.lines.models import Line, SpecVersion, Tag
from twinops.lines.selectors import line_get
from twinops.onboarding.services import line_onboard

from .conftest import DATA, SPECS

telemetry = pytest.importorskip("twinops.telemetry.services", reason="the telemetry importer has not landed yet")
from twinops.telemetry.models import Quality, Sample  # noqa: E402  (only once the importer exists)

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


BIBMON = DATA / "bibmon_real_process" / "real_process_data.csv.gz"


def bibmon_bad_cells() -> dict[str, int]:
    """Count the historian strings in the file itself, to check the import against."""
    with gzip.open(BIBMON, "rt", newline="") as fh:
        cells = [c for row in list(csv.reader(fh))[1:] for c in row[1:]]
    return {s: cells.count(s) for s in BIBMON_BAD}


def samples_of(line: Line) -> QuerySet[Sample]:
    return Sample.objects.filter(tag_id__in=Tag.objects.filter(line=line).values("id"))


def _onboard(name: str, history: Path, actor: object) -> object:
    spec = SPECS / f"{name}.yaml"
    return line_onboard(
        text=spec.read_text(),
        filename=spec.name,
        actor=actor,
        history_path=history,
        reason=f"onboard {name} from ../shared/data",
    )


def test_the_daisy_cstr_onboards_with_its_whole_history(tmp_path, data_user) -> None:
    result = _onboard("daisy_cstr", daisy_to_wide(tmp_path / "cstr.csv"), data_user)
    assert result.tags_by_role == {"CV": 2, "MV": 1, "DV": 0}
    h = result.history
    assert h.samples_received == h.samples_inserted == 7500 * 3
    assert (h.samples_duplicate, h.samples_bad_quality, h.samples_out_of_range, h.rejections) == (0, 0, 0, [])
    stored = samples_of(result.line)
    assert stored.filter(quality=Quality.GOOD).count() == 7500 * 3
    last = stored.get(tag__name="T", ts=datetime(2000, 1, 1, 12, 30, tzinfo=UTC))  # t = 750 min, the last row
    assert last.value == pytest.approx(float((DATA / "daisy_cstr" / "cstr.dat").read_text().split()[-1]))


def test_the_cascaded_tanks_onboard_with_both_records(tmp_path, data_user) -> None:
    result = _onboard("cascaded_tanks", cascaded_tanks_to_wide(tmp_path / "tanks.csv"), data_user)
    assert result.tags_by_role == {"CV": 1, "MV": 1, "DV": 0}
    h = result.history
    assert h.samples_received == h.samples_inserted == 2 * 1024 * 2
    assert (h.samples_bad_quality, h.samples_out_of_range) == (0, 0)  # 10 V (overflow) is inside the range
    level = samples_of(result.line).filter(tag__name="lower_tank_level")
    assert level.count() == 2048 and level.filter(value=10.0).exists()


def test_bibmon_historian_strings_become_bad_quality_samples_with_their_reason(data_user) -> None:
    assert bibmon_bad_cells() == BIBMON_BAD
    result = _onboard("bibmon_real_process", BIBMON, data_user)
    assert result.tags_by_role == {"CV": 0, "MV": 0, "DV": 108}
    h = result.history
    assert h.samples_received == h.samples_inserted == 3169 * 108  # bad cells are stored, flagged: no silent gap
    assert h.samples_bad_quality == sum(BIBMON_BAD.values())
    stored = samples_of(result.line)
    assert stored.count() == 3169 * 108
    bad = stored.filter(quality=Quality.BAD)
    assert dict(Counter(bad.values_list("reason__text", flat=True))) == BIBMON_BAD
    assert not bad.filter(value__isnull=False).exists()
    first = stored.get(tag__name="tag2", ts=datetime(2017, 12, 24, tzinfo=UTC))  # row 1 of the file: 'Inp OutRange'
    assert (first.quality, first.value, first.reason.text) == (Quality.BAD, None, "Inp OutRange")
    report = {(r.row, r.column): r.reason for r in h.rejections}
    assert "Inp OutRange" in report[(2, "tag2")]  # file line 2 (the header is line 1)
    assert sum("Scan Timeout" in r.reason for r in h.rejections) == BIBMON_BAD["Scan Timeout"]


def test_a_history_file_with_a_wrong_header_creates_nothing_at_all(tmp_path, data_user, row_counts) -> None:
    history = tmp_path / "wrong.csv"
    history.write_text("time,flow,conc\n2020-01-01T00:00:00Z,1,2\n")
    before, samples = row_counts(), Sample.objects.count()
    with pytest.raises(telemetry.HistoryFileError) as caught:
        _onboard("daisy_cstr", history, data_user)
    assert {p.column for p in caught.value.problems} == {"flow", "conc"}
    assert row_counts() == before and Sample.objects.count() == samples
    assert not Line.objects.filter(key="daisy-cstr").exists()


def test_the_cli_onboards_bibmon_with_a_progress_bar_and_a_rejection_report(tmp_path, data_user) -> None:
    out, err = StringIO(), StringIO()
    report = tmp_path / "report.csv"
    call_command(
        "line",
        "onboard",
        str(SPECS / "bibmon_real_process.yaml"),
        "--history",
        str(BIBMON),
        "--reason",
        "historian extract",
        "--as",
        data_user.username,
        "--rejections-out",
        str(report),
        stdout=out,
        stderr=err,
    )
    text = out.getvalue()
    assert "108 tags (0 CV, 0 MV, 108 DV)" in text
    assert f"{3169 * 108:,} samples received" in text and f"{sum(BIBMON_BAD.values()):,} bad quality" in text
    assert "100.0%" in err.getvalue() and f"{BIBMON.name} [" in err.getvalue()
    rows = list(csv.DictReader(report.open()))
    assert len(rows) >= sum(BIBMON_BAD.values()) and list(rows[0]) == ["row", "column", "reason"]
    assert sum("Scan Timeout" in r["reason"] for r in rows) == BIBMON_BAD["Scan Timeout"]
    assert f"Rejection report: {report.resolve()}" in text
    line = line_get(key="bibmon-real-process")
    assert Tag.objects.filter(line=line).count() == 108 and SpecVersion.objects.filter(line=line).count() == 1
