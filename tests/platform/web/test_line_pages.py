"""The line list and line page: tag counts, freshness, the chart partial's figure, the data-quality table."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import numpy as np
import pytest

pytest.importorskip("twinops.telemetry.selectors", reason="the telemetry app has not landed yet")

END = datetime(2026, 3, 1, 12, tzinfo=UTC)


def figure_in(html: str) -> dict:
    """Return the Plotly figure embedded in a page or partial."""
    found = re.search(
        r'<script type="application/json" class="plotly-figure" data-target="([^"]+)">(.*?)</script>', html, re.S
    )
    assert found, "no plotly figure in the response"
    assert f'id="{found.group(1)}"' in html, "the figure's target div is missing"
    return json.loads(found.group(2))


def plotted(values: list | dict) -> np.ndarray:
    """Return a trace's x or y as numbers: a JSON list (None as NaN) or a plotly.js typed array (base64)."""
    if isinstance(values, dict):
        assert values["dtype"] == "f8", values["dtype"]
        return np.frombuffer(base64.b64decode(values["bdata"]), "<f8")
    return np.asarray(values, dtype=float)


def plotted_points(trace: dict) -> int:
    return int(np.count_nonzero(~np.isnan(plotted(trace.get("y") or []))))


@pytest.mark.django_db
def test_chart_partial_returns_a_figure_of_the_chosen_tag_over_the_chosen_range(login, onboarded) -> None:
    onboarded(end=END, minutes=120)
    client = login("engineer")
    response = client.get(
        "/lines/web-demo/chart/",
        {"tags": ["T"], "range": "custom", "start": "2026-03-01T11:00", "end": "2026-03-01T12:00"},
    )
    assert response.status_code == 200
    figure = figure_in(response.content.decode())
    named = [t for t in figure["data"] if t.get("name") == "T"]
    assert len(named) == 1 and plotted_points(named[0]) > 0
    assert figure["layout"]["xaxis"]["range"][0].startswith("2026-03-01T11:00")
    limits = sorted(s["y0"] for s in figure["layout"]["shapes"])
    assert limits == [60, 90, 120]  # low and high operating limits, and the safety limit, drawn as lines


@pytest.mark.django_db
def test_chart_presets_end_at_the_newest_sample_so_old_history_shows_at_once(login, onboarded) -> None:
    onboarded(end=END, minutes=120)
    response = login("engineer").get("/lines/web-demo/")
    assert response.status_code == 200
    figure = figure_in(response.content.decode())
    assert figure["layout"]["xaxis"]["range"][1].startswith("2026-03-01T12:00")
    assert {t["name"] for t in figure["data"] if t.get("mode") == "lines" and "min" not in t["name"]} >= {"T", "F"}


@pytest.mark.django_db
def test_a_custom_range_that_ends_before_it_starts_is_explained(login, onboarded) -> None:
    onboarded(end=END, minutes=10)
    response = login("engineer").get(
        "/lines/web-demo/chart/",
        {"tags": ["T"], "range": "custom", "start": "2026-03-01T12:00", "end": "2026-03-01T11:00"},
    )
    assert response.status_code == 400
    assert "The end of the range must come after its start." in response.content.decode()


@pytest.mark.django_db
def test_line_list_shows_tag_counts_by_role_and_data_freshness(login, onboarded) -> None:
    onboarded(end=END, minutes=10)
    html = re.sub(r"\s+", " ", login("auditor").get("/").content.decode())
    assert "Web demo reactor" in html and 'href="/lines/web-demo/"' in html
    assert "Test site / Reactors" in html
    assert re.search(r'<td class="num">1</td> <td class="num">1</td> <td class="num">1</td>', html)
    assert 'class="badge stale"' in html and "2026-03-01 12:00:00" in html  # last sample long ago: stale


@pytest.mark.django_db
def test_quality_table_counts_bad_samples_and_lists_problem_tags_first(login, onboarded) -> None:
    onboarded(end=END, minutes=60, bad_every=6)
    html = re.sub(r"\s+", " ", login("engineer").get("/lines/web-demo/").content.decode())
    rows = re.findall(r'<tr class="(problem|attention|)">(.*?)</tr>', html)
    assert rows[0][0] == "problem" and 'role-CV">CV</span> T ' in rows[0][1]
    assert all(kind != "problem" for kind, _ in rows[1:])
    assert "Bad" in rows[0][1]  # the historian's reason is shown
    assert '<td class="num problem">10</td>' in rows[0][1]  # 60 rows, every 6th bad
