"""Emit a line's spec in the platform's line-spec format (docs/line-spec.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from plantsim.line import Line, Tag

SCHEMA_VERSION = 1


def _bounds(bounds: tuple[float | None, float | None]) -> dict[str, float | None]:
    return {"low": bounds[0], "high": bounds[1]}


def _tag_entry(line: Line, tag: Tag) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": tag.name,
        "role": tag.role,
        "unit": tag.unit,
        "description": tag.description,
        "physical_range": [tag.physical_range[0], tag.physical_range[1]],
    }
    if tag.limits is not None:
        entry["limits"] = _bounds(tag.limits)
    if tag.role == "CV" and tag.safety_limits is not None:
        entry["safety_limits"] = _bounds(tag.safety_limits)
    if tag.role == "MV":
        tuning = line.mv_tuning[tag.name]
        entry["max_move_per_step"] = tuning.max_move_per_step
        entry["ramp_rate_per_min"] = tuning.ramp_per_min
    entry["opcua_node"] = tag.opcua_node
    return entry


def line_spec(line: Line) -> dict[str, Any]:
    """Return the line's spec as plain data (schema_version 1)."""
    spec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "line": {
            "id": line.id,
            "name": line.name,
            "site": line.site,
            "area": line.area,
            "sample_period_s": line.sample_period_s,
            "description": line.description,
        },
        "tags": [_tag_entry(line, t) for t in line.tags],
        "objective": {
            "currency": line.currency,
            "terms": [
                {"tags": list(t.tags), "price": t.price, "description": t.description} for t in line.objective_terms
            ],
        },
    }
    # the PLC's line-level nodes (plantsim/plc.py), so the platform's release agent can watch and feed it
    spec["plc"] = {
        "mode_node": f"ns=2;s={line.id}.mode",
        "heartbeat_node": f"ns=2;s={line.id}.heartbeat",
        "fallback_active_node": f"ns=2;s={line.id}.fallback_active",
    }
    if line.targets:
        spec["objective"]["targets"] = [{"tag": t.tag, "value": t.value, "weight": t.weight} for t in line.targets]
    return spec


def write_spec_yaml(line: Line, path: Path) -> Path:
    """Write the line's spec as YAML (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    header = f"# Line spec of {line.name}, emitted by plantsim (python -m plantsim export --line {line.id}).\n"
    tmp.write_text(header + yaml.safe_dump(line_spec(line), sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, path)
    return path
