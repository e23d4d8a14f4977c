"""Fixtures for telemetry: a small line with three tags, a bibmon-shaped line, API tokens, row counts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def line_make(key: str, tags: dict[str, tuple[str, float, float]], *, period_s: float = 1.0, opcua: dict | None = None):
    """Create a line and its tags directly with the ORM: name -> (role, physical low, physical high)."""
    from twinops.lines.models import Line, Tag

    line = Line.objects.create(key=key, name=key, sample_period_s=period_s, created_at=T0)
    for name, (role, low, high) in tags.items():
        Tag.objects.create(
            line=line,
            name=name,
            role=role,
            unit="u",
            physical_low=low,
            physical_high=high,
            opcua_node=(opcua or {}).get(name, ""),
        )
    return line


@pytest.fixture
def line(db: None) -> Any:
    """A line with a CV temperature (0-200), an MV flow (0-50) and a DV inlet temperature (-20-60); 1 s period."""
    return line_make("reactor", {"T": ("CV", 0, 200), "F": ("MV", 0, 50), "T_in": ("DV", -20, 60)})


@pytest.fixture
def sample_count(db: None) -> Callable[[], int]:
    """Count stored samples (all lines)."""
    from django.db import connection

    def count() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM telemetry_sample")
            return int(cur.fetchone()[0])

    return count


@pytest.fixture
def samples(db: None) -> Callable[..., list[tuple]]:
    """Return stored samples of a line as (tag, ts, value, quality, reason) sorted by tag and time."""
    from django.db import connection

    def fetch(line: Any) -> list[tuple]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT t.name, s.ts, s.value, s.quality, r.text FROM telemetry_sample s "
                "JOIN lines_tag t ON t.id = s.tag_id LEFT JOIN telemetry_reason r ON r.id = s.reason_id "
                "WHERE t.line_id = %s ORDER BY t.name, s.ts",
                [line.pk],
            )
            return cur.fetchall()

    return fetch


@pytest.fixture(autouse=True)
def sent_jobs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record import jobs sent to the ingest queue instead of sending them to the shared broker."""
    from twinops.telemetry import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks, "history_import_send", sent.append)
    return sent
