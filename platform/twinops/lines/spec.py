"""Parse and validate a line spec (YAML or JSON): JSON Schema, then checks across fields, every problem with its line.

The format is documented in docs/line-spec.md; the schema ships beside this module as `line_spec.schema.json`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

SCHEMA_PATH = Path(__file__).with_name("line_spec.schema.json")
MAX_SPEC_CHARS = 1_000_000  # a 1,000-tag spec is ~250 kB; anything far larger is not a spec
ROLES = ("CV", "MV", "DV")
MV_ONLY_FIELDS = ("max_move_per_step", "ramp_rate_per_min", "dual_approval_above")

FieldPath = tuple[str | int, ...]  # a JSON-pointer path into the document, e.g. ("tags", 3, "limits", "high")


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where (file, 1-based line, readable field path) and why."""

    file: str
    line: int
    field: str  # e.g. "tags[3].limits.high" (indices 0-based); "(document)" for the whole file, "(syntax)" for YAML
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class SpecError(ValueError):
    """A spec that cannot be accepted; `.problems` lists every problem found, in line order."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class TagSpec:
    """One tag as the spec states it, named like the `Tag` model's fields."""

    name: str
    role: str
    unit: str
    description: str
    physical_low: float
    physical_high: float
    limit_low: float | None
    limit_high: float | None
    safety_low: float | None
    safety_high: float | None
    max_move_per_step: float | None
    ramp_rate_per_min: float | None
    opcua_node: str


@dataclass(frozen=True)
class ParsedSpec:
    """A valid spec: the document as parsed, its source and hash, and where each field sits in the file."""

    filename: str
    source_text: str
    sha256: str  # of source_text, UTF-8
    document: dict[str, Any]
    lines: Mapping[FieldPath, int] = field(repr=False)

    @property
    def key(self) -> str:
        return self.document["line"]["id"]

    @cached_property
    def tags(self) -> tuple[TagSpec, ...]:
        return tuple(_tag_spec(t) for t in self.document["tags"])

    def line_of(self, *path: str | int) -> int:
        """Return the source line of a field, or of its nearest enclosing field."""
        return _line_of(self.lines, tuple(path))


def field_name(path: FieldPath) -> str:
    """Render a path readably: ("tags", 3, "limits", "high") -> "tags[3].limits.high"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


@cache
def spec_schema() -> dict[str, Any]:
    """Return the line spec JSON Schema (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(spec_schema())
    return Draft202012Validator(spec_schema())


def spec_parse(*, text: str, filename: str) -> ParsedSpec:
    """Parse and validate a spec's text; raise `SpecError` listing every problem (file, line, field, reason)."""
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError([SpecProblem(filename, 1, "(document)", f"file is larger than {MAX_SPEC_CHARS:,} characters")])
    problems: list[SpecProblem] = []
    data, lines = _load(text, filename, problems)
    if data is None and not problems:
        problems.append(SpecProblem(filename, 1, "(document)", "the file is empty"))
    if problems and not lines:
        raise SpecError(problems)
    found = [*_schema_problems(data, lines), *_semantic_problems(data)]
    seen = {(p.field, p.reason) for p in problems}
    for path, reason in found:
        if (field_name(path), reason) not in seen:
            seen.add((field_name(path), reason))
            problems.append(SpecProblem(filename, _line_of(lines, path), field_name(path), reason))
    if problems:
        raise SpecError(problems)
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    return ParsedSpec(filename=filename, source_text=text, sha256=sha256, document=data, lines=lines)


# ---------------------------------------------------------------- YAML (and JSON, which PyYAML reads as YAML)


class _Loader(yaml.SafeLoader):
    """SafeLoader reading floats as YAML 1.2 and JSON do: `1e-3` is a number, not the string "1e-3"."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _load(text: str, filename: str, problems: list[SpecProblem]) -> tuple[Any, dict[FieldPath, int]]:
    """Compose the node tree (for line numbers) and construct the data from it; YAML errors become problems."""
    if filename.lower().endswith(".json"):
        text = text.replace(
            "\t", " "
        )  # JSON allows tab indentation, YAML does not; a tab inside a JSON string is invalid
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[FieldPath, int] = {}
        _map_lines(node, (), lines, problems, filename, set())
        if any(p.field == "(syntax)" for p in problems):
            return None, {}
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        reason = ": ".join(x for x in (e.context, e.problem) if x)
        problems.append(SpecProblem(filename, (mark.line + 1) if mark else 1, "(syntax)", reason))
        return None, {}
    except yaml.YAMLError as e:
        problems.append(SpecProblem(filename, 1, "(syntax)", str(e)))
        return None, {}
    finally:
        loader.dispose()


def _map_lines(
    node: yaml.Node,
    path: FieldPath,
    lines: dict[FieldPath, int],
    problems: list[SpecProblem],
    filename: str,
    seen: set[int],
) -> None:
    """Record the 1-based line of every field; report aliases, non-text keys and duplicate keys."""
    if id(node) in seen:  # an alias: refused, so a small file cannot expand into a huge document
        problems.append(
            SpecProblem(filename, node.start_mark.line + 1, "(syntax)", "anchors and aliases are not supported")
        )
        return
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                problems.append(
                    SpecProblem(filename, key_line, "(syntax)", f"key {key_node.value!r} must be text (quote it)")
                )
                continue
            child = (*path, key_node.value)
            if child in lines:
                problems.append(
                    SpecProblem(filename, key_line, field_name(child), f"duplicate key (first on line {lines[child]})")
                )
                continue
            lines[child] = key_line
            _map_lines(value_node, child, lines, problems, filename, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _map_lines(item, (*path, i), lines, problems, filename, seen)


def _line_of(lines: Mapping[FieldPath, int], path: FieldPath) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


# ---------------------------------------------------------------- JSON Schema

_PATTERN_WORDS = {
    "^[a-z0-9][a-z0-9-]{1,62}$": "must be a slug: 2-63 lower-case letters, digits and hyphens, not starting with a hyphen",
    "^[A-Za-z][A-Za-z0-9_.-]*$": "must start with a letter and hold only letters, digits, '_', '.' and '-'",
    "^(ns=[0-9]+;|nsu=[^;]+;)?[isgb]=.+$": "must be an OPC UA node id such as ns=2;s=Line.Tag or ns=3;i=1001",
    "^[A-Z]{3}$": "must be a three-letter currency code such as EUR",
    r"^opc\.tcp://([^\s/:\[\]]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/\S*)?$": (
        "must be an OPC UA endpoint such as opc.tcp://plc-7.plant:4840/line"
    ),
    "^[0-9A-Fa-f]{2}(:?[0-9A-Fa-f]{2}){31}$": "must be a SHA-256 fingerprint: 64 hex digits, colons allowed",
}
_TYPE_WORDS = {
    "number": "a number",
    "string": "text",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
    "integer": "an integer",
    "boolean": "true or false",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"text ({value!r})" if len(value) < 40 else "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _schema_problems(data: Any, lines: Mapping[FieldPath, int]) -> Iterator[tuple[FieldPath, str]]:
    for error in sorted(_validator().iter_errors(data), key=lambda e: _line_of(lines, tuple(e.absolute_path))):
        yield from _explain(error)


def _explain(error: ValidationError) -> Iterator[tuple[FieldPath, str]]:
    """Turn one schema error into (path, reason) pairs a plant engineer can act on."""
    path, kind, want, value = tuple(error.absolute_path), error.validator, error.validator_value, error.instance
    if _is_nonfinite(value):
        return  # reported once, as "must be a finite number", by the semantic checks
    if kind == "required":
        for name in want:
            if isinstance(value, dict) and name not in value:
                yield (*path, name), "required field is missing"
    elif kind == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        for key in value:
            if key not in error.schema.get("properties", {}):
                yield (*path, key), f"unknown field (allowed here: {allowed})"
    elif kind == "type":
        wanted = " or ".join(_TYPE_WORDS.get(t, t) for t in ([want] if isinstance(want, str) else want))
        yield path, f"must be {wanted}, not {_json_type(value)}"
    elif kind == "enum":
        yield path, f"must be one of {', '.join(map(str, want))}, not {value!r}"
    elif kind == "const":
        yield path, f"must be {want!r}, not {value!r}"
    elif kind == "pattern":
        yield path, f"{value!r} {_PATTERN_WORDS.get(want, f'must match {want}')}"
    elif kind == "minLength":
        yield path, "must not be empty" if want == 1 else f"must be at least {want} characters"
    elif kind == "maxLength":
        yield path, f"must be at most {want} characters, not {len(value)}"
    elif kind in ("minItems", "maxItems") and "prefixItems" in error.schema:
        yield path, f"must be a pair [low, high], not {len(value)} value(s)"
    elif kind == "minItems":
        yield (
            path,
            f"must hold at least {want} item(s)" + (": a line needs at least one tag" if path == ("tags",) else ""),
        )
    elif kind == "maxItems":
        yield path, f"must hold at most {want} item(s)"
    elif kind == "exclusiveMinimum":
        yield path, f"must be greater than {want}, not {value}"
    elif kind == "minimum":
        yield path, f"must be at least {want}, not {value}"
    else:
        yield path, error.message


# ---------------------------------------------------------------- checks across fields


def _num(value: Any) -> float | None:
    """Return a finite number as float, anything else (missing, wrong type, NaN) as None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _list(value: Any) -> list[Any]:
    """Return a list as is, anything else as an empty list (its type error is the schema's to report)."""
    return value if isinstance(value, list) else []


def _pair(value: Any) -> tuple[float | None, float | None]:
    """Return a [low, high] pair's finite numbers, None where missing or not a number."""
    return (_num(value[0]), _num(value[1])) if isinstance(value, list) and len(value) == 2 else (None, None)


def _nonfinite_paths(value: Any, path: FieldPath = ()) -> Iterator[FieldPath]:
    if _is_nonfinite(value):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nonfinite_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nonfinite_paths(v, (*path, i))


def _semantic_problems(data: Any) -> Iterator[tuple[FieldPath, str]]:
    """Check what a schema cannot: uniqueness, ordering of bounds, role-specific fields, references to tags."""
    for path in _nonfinite_paths(data):
        yield path, "must be a finite number"
    if not isinstance(data, dict):
        return
    tags = _list(data.get("tags"))
    roles: dict[str, str | None] = {}  # tag name -> role, for the objective's references
    first_index: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for i, tag in enumerate(tags):
        if not isinstance(tag, dict):
            continue
        name, role = tag.get("name"), tag.get("role") if tag.get("role") in ROLES else None
        if isinstance(name, str):
            if name in first_index:
                yield ("tags", i, "name"), f"duplicate tag name {name!r} (also tags[{first_index[name]}])"
            else:
                first_index[name], roles[name] = i, role
        node = tag.get("opcua_node")
        if isinstance(node, str):
            if node in nodes:
                yield ("tags", i, "opcua_node"), f"OPC UA node {node!r} is already used by tags[{nodes[node]}]"
            nodes.setdefault(node, i)
        yield from _tag_problems(("tags", i), tag, role)
    objective = data.get("objective")
    if isinstance(objective, dict):
        yield from _objective_problems(objective, roles, tags)
    plc = data.get("plc")
    if isinstance(plc, dict):
        yield from _plc_problems(plc)


def _tag_problems(at: FieldPath, tag: dict[str, Any], role: str | None) -> Iterator[tuple[FieldPath, str]]:
    plow, phigh = _pair(tag.get("physical_range"))
    if plow is not None and phigh is not None and plow >= phigh:
        yield (*at, "physical_range"), f"low ({plow:g}) must be below high ({phigh:g})"
        plow = phigh = None  # further checks against a nonsensical range would only add noise
    limits, safety = tag.get("limits"), tag.get("safety_limits")
    limits = limits if isinstance(limits, dict) else None
    safety = safety if isinstance(safety, dict) else None
    if role == "DV" and "limits" in tag:
        yield (*at, "limits"), "operating limits apply to CVs and MVs; a DV is measured, not controlled"
    if role == "MV":
        if "limits" not in tag:
            yield (*at, "limits"), "an MV needs operating limits {low, high}: they bound the optimiser's setpoints"
        elif limits is not None:
            for side in ("low", "high"):
                if limits.get(side) is None:
                    yield (*at, "limits", side), "an MV needs both operating limits: they bound its setpoints"
    if role in ("CV", "MV") and limits is not None:
        yield from _bounds_problems((*at, "limits"), limits, plow, phigh, "operating limit")
    if role in ("MV", "DV") and "safety_limits" in tag:
        yield (
            (*at, "safety_limits"),
            f"safety limits apply to CVs only; this tag is a{'n' if role == 'MV' else ''} {role}",
        )
    if role == "CV" and safety is not None:
        yield from _bounds_problems((*at, "safety_limits"), safety, plow, phigh, "safety limit")
        lim = limits or {}
        slow, shigh, llow, lhigh = (
            _num(safety.get("low")),
            _num(safety.get("high")),
            _num(lim.get("low")),
            _num(lim.get("high")),
        )
        if slow is not None and llow is not None and slow > llow:
            yield (
                (*at, "safety_limits", "low"),
                f"{slow:g} is inside the operating limits: must be at or below low ({llow:g})",
            )
        if shigh is not None and lhigh is not None and shigh < lhigh:
            yield (
                (*at, "safety_limits", "high"),
                f"{shigh:g} is inside the operating limits: must be at or above high ({lhigh:g})",
            )
    if role in ("CV", "DV"):
        for name in MV_ONLY_FIELDS:
            if name in tag:
                yield (*at, name), f"only MVs have {name}; this tag is a {role}"


def _bounds_problems(
    at: FieldPath, bounds: dict[str, Any], plow: float | None, phigh: float | None, what: str
) -> Iterator[tuple[FieldPath, str]]:
    low, high = _num(bounds.get("low")), _num(bounds.get("high"))
    if low is not None and high is not None and low >= high:
        yield (*at, "low"), f"low ({low:g}) must be below high ({high:g})"
    for side, value in (("low", low), ("high", high)):
        if value is None:
            continue
        if plow is not None and value < plow:
            yield (*at, side), f"{what} {value:g} is below the physical range low ({plow:g})"
        if phigh is not None and value > phigh:
            yield (*at, side), f"{what} {value:g} is above the physical range high ({phigh:g})"


def _objective_problems(
    objective: dict[str, Any], roles: dict[str, str | None], tags: list[Any]
) -> Iterator[tuple[FieldPath, str]]:
    for k, term in enumerate(_list(objective.get("terms"))):
        names = _list(term.get("tags")) if isinstance(term, dict) else []
        for m, name in enumerate(names):
            if isinstance(name, str) and name not in roles:
                yield ("objective", "terms", k, "tags", m), f"no tag named {name!r} in this spec"
        known = [roles[n] for n in names if isinstance(n, str) and n in roles]
        if known and len(known) == len(names) and all(r == "DV" for r in known):
            yield (
                ("objective", "terms", k, "tags"),
                "a term over DVs only is constant to the optimiser: include a CV or MV",
            )
    targeted: dict[str, int] = {}
    for k, target in enumerate(_list(objective.get("targets"))):
        if not isinstance(target, dict) or not isinstance(target.get("tag"), str):
            continue
        name = target["tag"]
        if name not in roles:
            yield ("objective", "targets", k, "tag"), f"no tag named {name!r} in this spec"
            continue
        if roles[name] not in ("CV", None):
            yield (
                ("objective", "targets", k, "tag"),
                f"targets apply to CVs; {name!r} is a{'n' if roles[name] == 'MV' else ''} {roles[name]}",
            )
        if name in targeted:
            yield (
                ("objective", "targets", k, "tag"),
                f"{name!r} already has a target (objective.targets[{targeted[name]}])",
            )
        targeted.setdefault(name, k)
        value = _num(target.get("value"))
        tag = next((t for t in tags if isinstance(t, dict) and t.get("name") == name), {})
        low, high = _pair(tag.get("physical_range"))
        if value is not None and low is not None and high is not None and not low <= value <= high:
            yield (
                ("objective", "targets", k, "value"),
                f"target {value:g} is outside the physical range [{low:g}, {high:g}] of {name!r}",
            )


def _plc_problems(plc: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    """Check that a PLC endpoint comes with its pinned certificate and write account, and only then."""
    pins = [k for k in ("server_fingerprint", "server_certificate") if k in plc]
    if "endpoint" not in plc:
        for key in (*pins, "security_mode", "write_account", "read_account"):
            if key in plc:
                yield ("plc", key), "only with an endpoint (plc.endpoint): say where the PLC is, or leave this out"
        return
    if not pins:
        yield (
            ("plc", "server_fingerprint"),
            "an endpoint needs the PLC's certificate pinned: give server_fingerprint or server_certificate",
        )
    elif len(pins) == 2:
        yield ("plc", "server_certificate"), "give server_fingerprint or server_certificate, not both"
    if "write_account" not in plc:
        yield ("plc", "write_account"), "required with an endpoint: the PLC account that may write setpoints"
    elif plc.get("read_account") == plc["write_account"]:
        yield (
            ("plc", "read_account"),
            "must differ from write_account: the collector reads with an account that cannot write",
        )


def _tag_spec(tag: dict[str, Any]) -> TagSpec:
    limits, safety = tag.get("limits") or {}, tag.get("safety_limits") or {}
    return TagSpec(
        name=tag["name"],
        role=tag["role"],
        unit=tag["unit"],
        description=tag.get("description", ""),
        physical_low=float(tag["physical_range"][0]),
        physical_high=float(tag["physical_range"][1]),
        limit_low=_num(limits.get("low")),
        limit_high=_num(limits.get("high")),
        safety_low=_num(safety.get("low")),
        safety_high=_num(safety.get("high")),
        max_move_per_step=_num(tag.get("max_move_per_step")),
        ramp_rate_per_min=_num(tag.get("ramp_rate_per_min")),
        opcua_node=tag.get("opcua_node", ""),
    )
