"""Fixtures for the dashboard tests: a small spec, a history file for it, logged-in clients by role."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

PASSWORD = "correct-horse-battery"

SPEC = """\
schema_version: 1
line:
  id: web-demo
  name: Web demo reactor
  site: Test site
  area: Reactors
  sample_period_s: 60
tags:
  - name: T
    role: CV
    unit: degC
    physical_range: [0, 200]
    limits: {low: 60, high: 90}
    safety_limits: {high: 120}
  - name: F
    role: MV
    unit: m3/h
    physical_range: [0, 50]
    limits: {low: 5, high: 40}
    max_move_per_step: 2
  - name: T_in
    role: DV
    unit: degC
    physical_range: [-20, 60]
"""


def history_csv(*, end: datetime, minutes: int = 120, bad_every: int = 0) -> str:
    """Return a wide history CSV for SPEC: one row a minute up to `end`; every `bad_every`-th T is 'Bad'."""
    rows = ["timestamp,T,F,T_in"]
    for i in range(minutes):
        at = end - timedelta(minutes=minutes - 1 - i)
        t = "Bad" if bad_every and i % bad_every == 0 else f"{75 + 10 * ((i % 20) - 10) / 10:.2f}"
        rows.append(f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')},{t},{20 + (i % 7)},{15 + (i % 5) * 0.5}")
    return "\n".join(rows) + "\n"


@pytest.fixture
def spec_text() -> str:
    """Return a valid three-tag spec (one CV, one MV, one DV)."""
    return SPEC


@pytest.fixture
def login(client: Client, make_user: Callable[..., Any]) -> Callable[[str], Client]:
    """Log the test client in as a new user of the given role."""

    def as_role(role: str) -> Client:
        user = make_user(role, username=f"{role}-web")
        client.force_login(user)
        return client

    return as_role


@pytest.fixture
def onboarded(make_user: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """Onboard the spec's line (through the lines service) with a history ending at `end`."""

    def onboard(*, end: datetime | None = None, minutes: int = 120, bad_every: int = 0) -> Any:
        from twinops.onboarding.services import line_onboard

        path = tmp_path / "history.csv"
        path.write_text(
            history_csv(end=end or datetime(2026, 3, 1, 12, tzinfo=UTC), minutes=minutes, bad_every=bad_every)
        )
        actor = make_user("data", username="onboarder")
        return line_onboard(text=SPEC, filename="web-demo.yaml", actor=actor, history_path=path, reason="test").line

    return onboard
