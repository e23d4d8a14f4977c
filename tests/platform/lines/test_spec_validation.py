"""A spec is checked against the shipped schema and across fields; every problem names its file, line and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from twinops.lines.spec import SCHEMA_PATH, SpecError, SpecProblem, spec_parse, spec_schema

from .conftest import SMALL_SPEC, SPECS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "line-spec.md"


def line_no(text: str, needle: str, nth: int = 1) -> int:
    """Return the 1-based line holding the nth occurrence of needle."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]


def problems(text: str, filename: str = "line.yaml") -> dict[str, SpecProblem]:
    with pytest.raises(SpecError) as caught:
        spec_parse(text=text, filename=filename)
    return {p.field: p for p in caught.value.problems}


def test_a_valid_spec_parses_into_tags_named_like_the_model() -> None:
    parsed = spec_parse(text=SMALL_SPEC, filename="line.yaml")
    assert parsed.key == "demo-reactor"
    by_name = {t.name: t for t in parsed.tags}
    assert (by_name["F"].role, by_name["F"].limit_low, by_name["F"].limit_high) == ("MV", 5.0, 40.0)
    assert by_name["T"].safety_high == 120.0 and by_name["T"].safety_low is None
    assert by_name["T_in"].opcua_node == "" and by_name["T"].opcua_node == "ns=2;s=demo.T"
    assert len(parsed.sha256) == 64


def test_a_yaml_syntax_error_is_reported_with_its_line() -> None:
    text = SMALL_SPEC.replace("    unit: m3/h\n", "    unit: m3/h\n   bad indent: [1, 2\n")
    found = problems(text, "reactor.yaml")
    assert list(found) == ["(syntax)"]
    problem = found["(syntax)"]
    assert problem.file == "reactor.yaml"
    assert problem.line == line_no(text, "bad indent")
    assert str(problem).startswith(f"reactor.yaml:{problem.line}: (syntax): ")


def test_schema_violations_name_the_line_and_field_of_each() -> None:
    text = (
        SMALL_SPEC.replace("id: demo-reactor", "id: Demo_Reactor")
        .replace("sample_period_s: 10", "sample_period_s: -1")
        .replace("    unit: m3/h\n", "")
        .replace("role: DV", "role: XV")
        .replace("    ramp_rate_per_min: 6\n", "    ramp_rate_per_min: 6\n    colour: red\n")
    )
    found = problems(text)
    assert found["line.id"].line == line_no(text, "id: Demo_Reactor")
    assert "slug" in found["line.id"].reason
    assert found["line.sample_period_s"].line == line_no(text, "sample_period_s")
    assert "greater than 0" in found["line.sample_period_s"].reason
    assert found["tags[1].unit"].line == line_no(text, "- name: F")
    assert found["tags[1].unit"].reason == "required field is missing"
    assert found["tags[1].colour"].line == line_no(text, "colour: red")
    assert "unknown field" in found["tags[1].colour"].reason
    assert found["tags[2].role"].line == line_no(text, "role: XV")
    assert "CV, MV, DV" in found["tags[2].role"].reason


def test_semantic_errors_are_all_reported_at_once() -> None:
    text = (
        SMALL_SPEC.replace("limits: {low: 5, high: 40}", "limits: {low: 5, high: 400}")
        .replace("physical_range: [-20, 60]", "physical_range: [60, -20]")
        .replace("safety_limits: {high: 120}", "safety_limits: {high: 80}")
        .replace('    opcua_node: "ns=2;s=demo.T"\n', '    opcua_node: "ns=2;s=demo.T"\n    max_move_per_step: 1\n')
        .replace("- name: T_in", "- name: F")
        .replace("{tag: T, value: 75, weight: 2}", "{tag: F, value: 75, weight: 2}")
        .replace("{tags: [F], price: -3.5}", "{tags: [F, Q], price: -3.5}")
    )
    found = problems(text)
    expected = {
        "tags[1].limits.high": ("limits: {low: 5, high: 400}", "above the physical range high (50)"),
        "tags[2].physical_range": ("physical_range: [60, -20]", "low (60) must be below high (-20)"),
        "tags[0].safety_limits.high": ("safety_limits: {high: 80}", "inside the operating limits"),
        "tags[0].max_move_per_step": ("max_move_per_step: 1", "only MVs have max_move_per_step"),
        "tags[2].name": ("- name: F", "duplicate tag name 'F'"),
        "objective.targets[0].tag": ("{tag: F, value: 75", "targets apply to CVs"),
        "objective.terms[0].tags[1]": ("{tags: [F, Q]", "no tag named 'Q'"),
    }
    for field, (needle, reason) in expected.items():
        assert field in found, f"{field} not reported; got {sorted(found)}"
        nth = 2 if needle == "- name: F" else 1
        assert found[field].line == line_no(text, needle, nth), field
        assert reason in found[field].reason, found[field].reason
    lines = [p.line for p in found.values()]
    assert lines == sorted(lines)


def test_role_specific_fields_are_checked() -> None:
    text = SMALL_SPEC.replace("    limits: {low: 5, high: 40}\n", "    limits: {low: 5}\n").replace(
        "    physical_range: [-20, 60]\n",
        "    physical_range: [-20, 60]\n    limits: {high: 50}\n    safety_limits: {high: 55}\n",
    )
    found = problems(text)
    assert "both operating limits" in found["tags[1].limits.high"].reason
    assert found["tags[1].limits.high"].line == line_no(text, "limits: {low: 5}")
    assert "a DV is measured, not controlled" in found["tags[2].limits"].reason
    assert "safety limits apply to CVs only" in found["tags[2].safety_limits"].reason


def test_a_spec_without_tags_is_refused() -> None:
    text = SMALL_SPEC.split("tags:")[0] + "tags: []\n"
    found = problems(text)
    assert "at least one tag" in found["tags"].reason
    assert found["tags"].line == line_no(text, "tags: []")


def test_a_json_spec_reports_lines_too_and_reads_exponent_numbers() -> None:
    doc = {
        "schema_version": 1,
        "line": {"id": "json-line", "name": "J", "sample_period_s": 1e-1},
        "tags": [{"name": "x", "role": "CV", "unit": "1", "physical_range": [-1e3, 1e3], "limits": {"low": 2e3}}],
    }
    text = json.dumps(doc, indent="\t")
    found = problems(text, "line.json")
    assert list(found) == ["tags[0].limits.low"]
    assert found["tags[0].limits.low"].line == line_no(text, '"low": 2000.0')
    assert "above the physical range high (1000)" in found["tags[0].limits.low"].reason
    doc["tags"][0]["limits"]["low"] = 1e-3
    assert spec_parse(text=json.dumps(doc), filename="line.json").tags[0].limit_low == 0.001


def test_duplicate_keys_and_aliases_are_refused() -> None:
    text = SMALL_SPEC.replace("  sample_period_s: 10\n", "  sample_period_s: 10\n  sample_period_s: 20\n")
    found = problems(text)
    assert found["line.sample_period_s"].line == line_no(text, "sample_period_s: 20")
    assert "duplicate key (first on line" in found["line.sample_period_s"].reason
    aliased = SMALL_SPEC.replace("physical_range: [0, 200]", "physical_range: &r [0, 200]").replace(
        "physical_range: [0, 50]", "physical_range: *r"
    )
    assert "aliases are not supported" in problems(aliased)["(syntax)"].reason


def test_non_numbers_and_infinities_are_refused_where_numbers_belong() -> None:
    text = SMALL_SPEC.replace("physical_range: [0, 50]", "physical_range: [0, .inf]").replace(
        "max_move_per_step: 2", "max_move_per_step: two"
    )
    found = problems(text)
    assert found["tags[1].physical_range[1]"].reason == "must be a finite number"
    assert found["tags[1].max_move_per_step"].reason == "must be a number, not text ('two')"


@pytest.mark.parametrize("text,reason", [("", "the file is empty"), ("- a\n- b\n", "must be a mapping, not a list")])
def test_a_file_that_is_not_a_spec_is_refused(text: str, reason: str) -> None:
    assert problems(text)["(document)"].reason == reason


def test_the_shipped_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_docs_describe_every_field_of_the_schema() -> None:
    docs, schema = DOCS.read_text(), spec_schema()
    names: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    missing = sorted(n for n in names if not re.search(rf"`{re.escape(n)}`", docs))
    assert not missing, f"docs/line-spec.md does not describe: {missing}"


@pytest.mark.parametrize("name,tags", [("daisy_cstr", 3), ("cascaded_tanks", 2), ("bibmon_real_process", 108)])
def test_the_data_set_specs_are_valid(name: str, tags: int) -> None:
    parsed = spec_parse(text=(SPECS / f"{name}.yaml").read_text(), filename=f"{name}.yaml")
    assert len(parsed.tags) == tags
