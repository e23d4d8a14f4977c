"""Fixtures for line onboarding: the test specs, row counts to prove "nothing created", and a valid small spec."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SPECS = Path(__file__).with_name("specs")
DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"  # /work/shared/data beside the checkout

SMALL_SPEC = """\
schema_version: 1
line:
  id: demo-reactor
  name: Demo reactor
  site: Test site
  sample_period_s: 10
tags:
  - name: T
    role: CV
    unit: degC
    physical_range: [0, 200]
    limits: {low: 60, high: 90}
    safety_limits: {high: 120}
    opcua_node: "ns=2;s=demo.T"
  - name: F
    role: MV
    unit: m3/h
    physical_range: [0, 50]
    limits: {low: 5, high: 40}
    max_move_per_step: 2
    ramp_rate_per_min: 6
  - name: T_in
    role: DV
    unit: degC
    physical_range: [-20, 60]
objective:
  terms:
    - {tags: [F], price: -3.5}
  targets:
    - {tag: T, value: 75, weight: 2}
"""


@pytest.fixture
def small_spec() -> str:
    """Return a valid three-tag spec (one CV, one MV, one DV)."""
    return SMALL_SPEC


@pytest.fixture
def row_counts(db: None) -> Callable[[], dict[str, int]]:
    """Count lines, tags, spec versions and audit events: compare before and after to prove nothing was created."""
    from twinops.audit.models import AuditEvent
    from twinops.lines.models import Line, SpecVersion, Tag

    def counts() -> dict[str, int]:
        return {m.__name__: m.objects.count() for m in (Line, Tag, SpecVersion, AuditEvent)}

    return counts


@pytest.fixture
def data_user(make_user):  # noqa: ANN001, ANN201
    """Return a user in the `data` role (may onboard lines and import telemetry)."""
    return make_user("data", username="dana")


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a file under tmp_path and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a named file into the test's tmp dir."""
    return lambda name, text: write(tmp_path, name, text)
