"""A day chart is downsampled (per-minute min/avg/max) yet still shows a spike one sample long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from .test_line_pages import figure_in, plotted

END = datetime(2026, 3, 2, tzinfo=UTC)
PERIOD_S = 10
SPIKE_AT = END - timedelta(hours=7, seconds=30)  # one sample, mid-minute, well inside the day
SPEC = """\
schema_version: 1
line:
  id: spiky
  name: Spiky line
  sample_period_s: 10
tags:
  - {name: P, role: CV, unit: bar, physical_range: [0, 100], limits: {low: 1, high: 60}}
"""


@pytest.fixture
def spiky_day() -> None:
    """Store a day of P every 10 s near 5 bar, with one sample at 80 bar."""
    from twinops.onboarding.services import line_onboard
    from twinops.telemetry.batch import RawBatch
    from twinops.telemetry.services import samples_ingest

    line = line_onboard(text=SPEC, filename="spiky.yaml", actor="system:test").line
    steps = 86_400 // PERIOD_S
    stamps = [END - timedelta(seconds=PERIOD_S * (steps - i)) for i in range(steps)]
    values = 5.0 + 0.1 * np.sin(np.arange(steps) / 50.0)
    records = [("P", at, 80.0 if at == SPIKE_AT else float(v)) for at, v in zip(stamps, values, strict=True)]
    assert sum(r[2] == 80.0 for r in records) == 1
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="test", actor="system:test")


@pytest.mark.django_db
def test_a_one_sample_spike_shows_in_the_downsampled_day_chart(login, spiky_day) -> None:
    response = login("engineer").get("/lines/spiky/chart/", {"tags": ["P"], "range": "24h"})
    assert response.status_code == 200
    traces = {t["name"]: t for t in figure_in(response.content.decode())["data"]}
    x = plotted(traces["P"]["x"])  # ms since the epoch, one point per minute bucket
    assert len(x) <= 2000 and len(x) < 86_400 // PERIOD_S, "the day is not downsampled"
    top, bottom, mean = (plotted(traces[n]["y"]) for n in ("P max", "P min–max", "P"))
    at = int(np.nanargmax(top))
    assert top[at] == pytest.approx(80.0), "the min-max band lost the spike"
    spike_ms = SPIKE_AT.timestamp() * 1000
    assert x[at] <= spike_ms < x[at] + 60_000, "the spike is drawn in the wrong minute"
    assert mean[at] < 20.0  # the minute's average all but hides it: the band is what shows it
    assert bottom[at] < 5.2 and np.nanmax(np.delete(top, at)) < 5.2  # the band spans 5 to 80 bar in that minute only
