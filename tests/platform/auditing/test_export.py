"""An export bundle holds a range's events, decisions, signed anchors, a report and a verifier anyone can run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from twinops.audit.anchors import public_key_hex, signing_key
from twinops.audit.services import audit_anchor, audit_record
from twinops.auditing import verify
from twinops.auditing.formats import csv_cell
from twinops.auditing.services import ExportRefused, audit_export

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(n: int, *, at: datetime, reason: str = "") -> None:
    with transaction.atomic():
        for i in range(n):
            audit_record(
                actor="system:test",
                action="test.done",
                object_type="x",
                object_id=str(i),
                reason=reason,
                after={"i": i, "neg_zero": -0.0, "big": 1e20, "text": "Grüße ✓"},
                at=at + timedelta(minutes=i),
            )


@pytest.fixture
def history(anchor_files) -> None:  # noqa: ANN001
    """Ten events on the first day (anchored after the fifth), ten on the second, ten on the third."""
    _record(5, at=T0)
    audit_anchor()
    _record(5, at=T0 + timedelta(hours=1))
    _record(10, at=T0 + timedelta(days=1))
    audit_anchor()
    _record(10, at=T0 + timedelta(days=2))


def _bundle(tmp_path: Path, **kw) -> tuple[Path, object]:  # noqa: ANN003
    out = tmp_path / "bundle.zip"
    result = audit_export(actor="system:test", out=out, **kw)
    return out, result


def test_an_export_of_a_past_day_verifies_and_carries_every_part(history, anchor_files, tmp_path: Path) -> None:  # noqa: ANN001
    out, result = _bundle(tmp_path, start=T0 + timedelta(days=1), end=T0 + timedelta(days=2))
    assert (result.first_id, result.last_id) == (11, 20)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        events = [json.loads(x) for x in zf.read("events.jsonl").decode().splitlines()]
        manifest = json.loads(zf.read("manifest.json"))
    assert {"manifest.json", "events.jsonl", "anchors.jsonl", "decisions.csv", "report.html", "verify.py"} <= names
    ids = [e["event"]["id"] for e in events]
    assert ids == list(range(11, 21)) + list(range(result.export_event_id, result.anchored_through + 1))
    assert events[-1]["event"]["action"] == "audit.exported"
    assert manifest["public_key"] == public_key_hex(signing_key(anchor_files[0], create=False))
    checked = verify.verify_bundle(out)
    assert checked.ok, checked.problem
    assert checked.anchored_through == result.export_event_id


def test_the_export_is_an_audited_event_naming_range_and_file_hashes(history, tmp_path: Path) -> None:  # noqa: ANN001
    out, result = _bundle(tmp_path, start=T0, end=T0 + timedelta(days=1))
    with connection.cursor() as cur:
        cur.execute("SELECT action, after::text FROM audit_auditevent WHERE id = %s", [result.export_event_id])
        action, after = cur.fetchone()
    after = json.loads(after)
    assert action == "audit.exported"
    assert (after["first_id"], after["last_id"]) == (1, 10)
    with zipfile.ZipFile(out) as zf:
        assert after["files"]["decisions.csv"] == hashlib.sha256(zf.read("decisions.csv")).hexdigest()


def test_verify_py_runs_standalone_on_the_zip_and_on_the_extracted_folder(history, tmp_path: Path) -> None:  # noqa: ANN001
    out, _ = _bundle(tmp_path, start=None, end=None)
    folder = tmp_path / "x"
    zipfile.ZipFile(out).extractall(folder)
    for target in (out, folder):
        run = subprocess.run(
            [sys.executable, "-I", str(folder / "verify.py"), str(target)], capture_output=True, text=True, cwd=tmp_path
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "OK:" in run.stdout
    (folder / "report.html").write_text("<p>all fine</p>")
    run = subprocess.run([sys.executable, "-I", str(folder / "verify.py"), str(folder)], capture_output=True, text=True)
    assert run.returncode == 1 and "report.html was changed after export" in run.stdout


def test_the_command_writes_a_bundle_and_says_how_to_check_it(history, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "cli.zip"
    call_command("audit", "export", "--from", "2026-03-02", "--to", "2026-03-03", str(out))
    printed = capsys.readouterr().out
    assert "events 11 to 20" in printed and "python verify.py" in printed
    assert verify.verify_bundle(out).ok
    with pytest.raises(CommandError, match="no line with this key"):
        call_command("audit", "export", "--line", "nope", str(tmp_path / "other.zip"))


def test_a_tampered_chain_is_not_exported(history, tmp_path: Path, database_superuser) -> None:  # noqa: ANN001
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("UPDATE audit_auditevent SET reason = 'x' WHERE id = 3")
        cur.execute("SET session_replication_role = origin")
    with pytest.raises(ExportRefused, match="event 3"):
        _bundle(tmp_path, start=None, end=None)
    assert not (tmp_path / "bundle.zip").exists()


def test_engineers_may_not_export(history, make_user, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(PermissionDenied):
        audit_export(actor=make_user("engineer"), start=None, end=None, out=tmp_path / "b.zip")
    audit_export(actor=make_user("auditor"), start=None, end=None, out=tmp_path / "b.zip")


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    assert [csv_cell(v) for v in ("=1+1", "+A1", "-2+3", "@SUM(A1)", "plain", -1.5, None)] == [
        "'=1+1",
        "'+A1",
        "'-2+3",
        "'@SUM(A1)",
        "plain",
        "-1.5",
        "",
    ]
    rows = list(csv.reader(io.StringIO("a\r\n" + csv_cell('=HYPERLINK("x")') + "\r\n")))
    assert rows[1][0].startswith("'=")


@pytest.mark.parametrize(
    "value",
    [
        {"b": -0.0, "a": 1e20, "c": 1.0000000000000002e16, "d": 5e-324, "e": 2**70},
        {"text": 'Grüße ✓ \u2028 \u00e9\u0301 "quoted" \\ \n\t', "long": "x" * 100_000},
        [None, True, False, 0, -1, 0.1, [], {}],
    ],
)
def test_verify_py_and_the_audit_app_hash_the_same_bytes(value: object) -> None:
    from twinops.audit.canonical import canonical_dumps, event_sha256

    assert verify.canonical_dumps(value) == canonical_dumps(value)
    event = {"id": 1, "after": value}
    assert verify.event_sha256(prev_sha256="ab" * 32, event=event, scheme=2) == event_sha256(
        prev_sha256="ab" * 32, canonical=canonical_dumps(event)
    )
