"""What a data team receives: the line spec and the history CSV, from the library and the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from plantsim import available_lines, make_line
from plantsim.history import export_line
from plantsim.spec import line_spec

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "platform" / "twinops" / "lines" / "line_spec.schema.json"


@pytest.mark.parametrize("line_id", ["vdv-reactor", "heat-train"])
def test_the_spec_names_roles_units_limits_moves_nodes_and_the_objective(line_id: str) -> None:
    spec = line_spec(make_line(line_id))
    assert spec["schema_version"] == 1 and spec["line"]["id"] == line_id and spec["line"]["sample_period_s"] > 0
    tags = {t["name"]: t for t in spec["tags"]}
    roles = [t["role"] for t in spec["tags"]]
    assert roles.count("MV") >= 2 and roles.count("CV") >= 4 and roles.count("DV") >= 1
    for tag in spec["tags"]:
        assert tag["unit"] and tag["opcua_node"] == f"ns=2;s={line_id}.{tag['name']}"
        low, high = tag["physical_range"]
        assert low < high
        if tag["role"] == "MV":
            assert tag["limits"]["low"] < tag["limits"]["high"]
            assert tag["max_move_per_step"] > 0 and tag["ramp_rate_per_min"] > 0
        if tag["role"] == "DV":
            assert "limits" not in tag
    assert any("safety_limits" in t for t in tags.values() if t["role"] == "CV")
    for term in spec["objective"]["terms"]:
        assert set(term["tags"]) <= set(tags)
    for target in spec["objective"]["targets"]:
        assert tags[target["tag"]]["role"] == "CV"


@pytest.mark.skipif(not SCHEMA.is_file(), reason="platform line-spec schema not present")
@pytest.mark.parametrize("line_id", ["vdv-reactor", "heat-train"])
def test_the_spec_validates_against_the_platform_schema(line_id: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(line_spec(make_line(line_id)), json.loads(SCHEMA.read_text()))


def test_the_second_line_has_three_mvs_five_cvs_and_a_measured_disturbance() -> None:
    line = make_line("heat-train")
    assert len(line.names("MV")) >= 3 and len(line.names("CV")) >= 5 and len(line.names("DV")) >= 1
    assert set(available_lines()) == {"vdv-reactor", "heat-train"}


@pytest.mark.parametrize("line_id", ["vdv-reactor", "heat-train"])
def test_the_history_csv_parses_and_every_mv_is_step_tested(tmp_path: Path, line_id: str) -> None:
    end = datetime(2024, 5, 1, tzinfo=UTC)
    calls: list[tuple[int, int]] = []
    spec_path, csv_path = export_line(
        line_id, tmp_path, days=1.0, end=end, seed=1, on_progress=lambda done, total: calls.append((done, total))
    )
    spec = yaml.safe_load(spec_path.read_text())
    rows = list(csv.reader(csv_path.open()))
    header, body = rows[0], rows[1:]
    assert header == ["timestamp", *[t["name"] for t in spec["tags"]]]
    period = spec["line"]["sample_period_s"]
    assert len(body) == round(86400 / period)
    stamps = [datetime.strptime(r[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for r in body]
    assert stamps[-1] == end and stamps[0] == end - timedelta(days=1) + timedelta(seconds=period)
    assert all((b - a).total_seconds() == period for a, b in zip(stamps, stamps[1:], strict=False))
    columns = {name: [r[i + 1] for r in body] for i, name in enumerate(header[1:])}
    for tag in spec["tags"]:
        cells = columns[tag["name"]]
        good = [float(c) for c in cells if c not in ("", "Bad")]
        assert len(good) > 0.97 * len(cells)  # a few bad values, written as empty cells
        if tag["role"] == "MV":
            moves = sum(1 for a, b in zip(good, good[1:], strict=False) if a != b)
            assert moves >= 5 and len(set(good)) >= 4
            assert all(tag["limits"]["low"] <= v <= tag["limits"]["high"] for v in good)
    assert any("" in cells for name, cells in columns.items())
    assert calls[-1] == (len(body), len(body)) and len(calls) >= 10


def test_the_cli_exports_spec_and_history_for_a_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantsim",
            "export",
            "--line",
            "heat-train",
            "--days",
            "0.05",
            "--out",
            str(tmp_path),
            "--end",
            "2024-05-01T00:00:00Z",
            "--bad-token",
            "Bad",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "heat-train.yaml").is_file()
    lines = (tmp_path / "heat-train.csv").read_text().splitlines()
    assert lines[0].startswith("timestamp,T_out,") and lines[-1].startswith("2024-05-01T00:00:00Z,")
    assert "100%" in result.stderr
