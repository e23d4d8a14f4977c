"""`twinops line …`: precise errors as file:line: field: reason with a non-zero exit, summaries on success."""

from __future__ import annotations

import csv
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from twinops.cli import main
from twinops.lines.models import SpecVersion, Tag


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("line", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db(transaction=True)  # the real entry point closes its connections on exit
def test_the_cli_prints_file_line_field_reason_and_exits_non_zero(small_spec, write_file, row_counts, capsys) -> None:
    bad = small_spec.replace("limits: {low: 5, high: 40}", "limits: {low: 5, high: 400}").replace(
        "role: DV", "role: XV"
    )
    path = write_file("bad.yaml", bad)
    before = row_counts()
    with pytest.raises(SystemExit) as exited:
        main(["line", "onboard", str(path), "--reason", "try"])
    assert exited.value.code != 0
    err = capsys.readouterr().err.splitlines()
    assert f"{path}:19: tags[1].limits.high: operating limit 400 is above the physical range high (50)" in err
    assert f"{path}:23: tags[2].role: must be one of CV, MV, DV, not 'XV'" in err
    assert any("2 problem(s)" in line and "nothing was created" in line for line in err)
    assert row_counts() == before


@pytest.mark.django_db
def test_onboarding_from_the_cli_prints_a_summary_by_role(small_spec, write_file, data_user) -> None:
    out, _ = run("onboard", str(write_file("demo.yaml", small_spec)), "--reason", "first", "--as", "dana")
    assert "Onboarded line demo-reactor (Demo reactor), spec v1: 3 tags (1 CV, 1 MV, 1 DV)." in out
    assert SpecVersion.objects.get(line__key="demo-reactor").created_by == data_user


@pytest.mark.django_db
def test_the_cli_refuses_an_existing_line_and_an_unknown_user(small_spec, write_file, row_counts) -> None:
    path = write_file("demo.yaml", small_spec)
    run("onboard", str(path))
    before = row_counts()
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was created"):
        call_command("line", "onboard", str(path), stdout=StringIO(), stderr=err)
    assert f"{path}:3: line.id: line 'demo-reactor' already exists" in err.getvalue()
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run("onboard", str(path), "--as", "ghost")
    assert row_counts() == before


@pytest.mark.django_db
def test_list_and_show_describe_lines_tags_and_versions(small_spec, write_file) -> None:
    run("onboard", str(write_file("demo.yaml", small_spec)), "--reason", "first")
    out, _ = run("list")
    assert out.splitlines()[1].split() == ["demo-reactor", "Demo", "reactor", "Test", "site", "1", "1", "1", "v1"]
    out, _ = run("show", "demo-reactor")
    assert "sample period: 10 s" in out
    assert any(line.split()[:5] == ["F", "MV", "m3/h", "[0,", "50]"] for line in out.splitlines())
    assert "v1" in out and "first" in out and "demo.yaml" in out
    with pytest.raises(CommandError, match="no line 'nope'"):
        run("show", "nope")


@pytest.mark.django_db
def test_update_makes_a_version_and_prints_what_changed(small_spec, write_file) -> None:
    run("onboard", str(write_file("demo.yaml", small_spec)))
    changed = write_file("demo2.yaml", small_spec.replace("limits: {low: 5, high: 40}", "limits: {low: 5, high: 30}"))
    out, _ = run("update", "demo-reactor", str(changed), "--reason", "pump derated")
    assert "spec v2 made (pump derated)" in out and "F: limits.high 40 -> 30" in out
    assert Tag.objects.get(line__key="demo-reactor", name="F").limit_high == 30
    out, _ = run("update", "demo-reactor", str(changed), "--reason", "again")
    assert "no new version made" in out
    assert SpecVersion.objects.filter(line__key="demo-reactor").count() == 2


@pytest.mark.django_db
def test_a_history_with_a_wrong_header_prints_where_and_creates_nothing(small_spec, write_file, row_counts) -> None:
    pytest.importorskip("twinops.telemetry.services", reason="the telemetry importer has not landed yet")
    spec = write_file("demo.yaml", small_spec)
    history = write_file("h.csv", "timestamp,T,F,T_in,Pressure\n2020-01-01T00:00:00Z,70,10,3,4\n")
    before, err = row_counts(), StringIO()
    with pytest.raises(CommandError, match="nothing was created"):
        call_command("line", "onboard", str(spec), "--history", str(history), stdout=StringIO(), stderr=err)
    assert f"{history}:1: Pressure: not a tag of line 'demo-reactor'" in err.getvalue()
    assert row_counts() == before


@pytest.mark.django_db
def test_the_rejection_report_is_written_beside_the_history_file(small_spec, write_file) -> None:
    pytest.importorskip("twinops.telemetry.services", reason="the telemetry importer has not landed yet")
    spec = write_file("demo.yaml", small_spec)
    history = write_file("h.csv", "timestamp,T,F,T_in\n2020-01-01T00:00:00Z,70,Bad,3\n2020-01-01T00:00:10Z,700,10,4\n")
    out, _ = run("onboard", str(spec), "--history", str(history))
    assert "6 samples received, 6 imported, 0 duplicate, 1 bad quality, 1 out of physical range" in out
    assert "  row 2, column F: stored as bad quality: Bad" in out
    report = history.with_name("h.csv.rejections.csv")
    assert f"Rejection report: {report}" in out
    assert report.read_text().splitlines()[:2] == ["row,column,reason", "2,F,stored as bad quality: Bad"]


@pytest.mark.django_db
def test_a_rejection_report_never_hands_a_spreadsheet_a_formula(small_spec, write_file) -> None:
    spec = write_file("demo.yaml", small_spec)
    history = write_file(
        "h.csv", 'timestamp,tag,value\n2020-01-01T00:00:00Z,T,70\n2020-01-01T00:00:00Z,"=HYPERLINK(""http://x"")",1\n'
    )
    out, _ = run("onboard", str(spec), "--history", str(history))
    rows = list(csv.reader(history.with_name("h.csv.rejections.csv").open(newline="")))
    assert rows[1][:2] == ["3", '\'=HYPERLINK("http://x")'] and rows[1][2].startswith("not stored: unknown tag")
