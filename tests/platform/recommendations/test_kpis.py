"""The per-line KPI page and the outcome on a proposal's page: what a controls engineer reads to keep trusting a twin."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from twinops.recommendations.models import Outcome, Recommendation
from twinops.recommendations.pages import outcome_context
from twinops.recommendations.services import outcomes_record, recommendation_create

from .conftest import DV, MV, PERIOD_S

P = timedelta(seconds=PERIOD_S)


def _figures(html: str) -> dict[str, dict[str, Any]]:
    found = re.findall(
        r'<script type="application/json" class="plotly-figure" data-target="([^"]+)">(.*?)</script>', html, re.S
    )
    return {target: json.loads(text) for target, text in found}


def _shift(rec: Recommendation, delta: timedelta) -> None:
    """Move a recommendation (and its outcome) in time, as if it had been made `delta` later."""
    rec.refresh_from_db()
    Recommendation.objects.filter(pk=rec.pk).update(
        slot=rec.slot + delta,
        created_at=rec.created_at + delta,
        expires_at=rec.expires_at + delta,
        decided_at=rec.decided_at + delta if rec.decided_at else None,
        released_at=rec.released_at + delta if rec.released_at else None,
    )
    Outcome.objects.filter(recommendation=rec).update(start=F("start") + delta)


@pytest.fixture
def history(ready: Any, ingest: Callable[..., datetime]) -> dict[str, Any]:
    """A released proposal that landed on its prediction (decided 90 s after it was made) and recent withheld slots.

    Made at the data's times, then moved so that the proposal's slot lies 57.5 min before the real now, a stale
    slot 5 min later and another stale one 10 days back.
    """
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    released = rec.created_at + timedelta(seconds=90)
    Recommendation.objects.filter(pk=rec.pk).update(status="approved", decided_at=released, released_at=released)
    r, n = rec.result, rec.result["horizon"]
    upper = [r["cv_hold_mean"]["upper_level_m"][0], *r["cv_mean"]["upper_level_m"]]
    lower = [r["cv_hold_mean"]["lower_level_m"][0], *[v + 0.5 for v in r["cv_mean"]["lower_level_m"]]]
    pump = [*r["mv_plan"][MV], r["mv_plan"][MV][-1]]
    rows = np.column_stack([upper, lower, pump, [rec.inputs["current_dv"][DV]] * len(upper)])
    ingest(line, rows, start=released)
    assert outcomes_record(now=released + (n + 3) * P + timedelta(seconds=1)) == 1
    stale = recommendation_create(line=line, actor="system:test", now=now + timedelta(minutes=5))
    old = recommendation_create(line=line, actor="system:test", now=now + timedelta(minutes=10))
    assert stale.status == old.status == "withheld" and "stale" in stale.reason
    delta = timezone.now() - timedelta(seconds=3450) - rec.slot
    _shift(rec, delta)
    _shift(stale, delta)
    _shift(old, delta - timedelta(days=10))
    return {"line": line, "rec": Recommendation.objects.get(pk=rec.pk), "horizon": n}


def _login(client: Any, make_user: Callable[..., Any], role: str = "auditor") -> None:
    make_user(role, username="kim")
    assert client.login(username="kim", password="correct-horse-battery")


@pytest.mark.parametrize("period", ["24h", "7d", "30d"])
def test_the_kpi_page_shows_each_period_with_its_figures(
    client: Any, make_user: Callable[..., Any], history: dict[str, Any], period: str
) -> None:
    line, rec, n = history["line"], history["rec"], history["horizon"]
    _login(client, make_user)
    response = client.get(f"/recommendations/{line.key}/kpis/?period={period}")
    assert response.status_code == 200
    html = response.content.decode()
    slots = html.split('<table class="slots">')[1].split("</table>")[0]
    assert re.search(r"<th scope=\"row\">proposal</th><td class=\"num\">1</td>", slots)
    stale = 2 if period == "30d" else 1
    assert f'withheld: data stale or bad</th><td class="num">{stale}</td>' in slots
    if period != "30d":
        assert "<strong>1 of 12</strong>" in html  # 57.5 min of 5-min slots: one proposal, one withheld, ten unmade
        assert 'no recommendation made</th><td class="num">10</td>' in slots
    assert "<strong>100%</strong> (1 approved, 0 rejected)" in html
    assert "<strong>1 min 30 s</strong>" in html  # median time from proposal to decision
    out = rec.outcome
    assert f"<strong>{out.coverage * 100:.0f}%</strong> of measured CV samples" in html
    assert f"predicted {out.predicted_gain_per_h:.2f}, realized <strong>{out.realized_gain_per_h:.2f}</strong>" in html
    figures = _figures(html)
    assert set(figures) == {"kpi-slots", "kpi-error", "kpi-coverage", "kpi-gain"}
    lower = [t for t in figures["kpi-error"]["data"] if t["y"][0] == pytest.approx(0.5)]
    assert len(lower) == 1 and lower[0]["y"] == pytest.approx([0.5] * n)  # the lower tank 0.5 m off at every step
    assert len(figures["kpi-error"]["data"]) == 2  # one panel per CV
    gain = next(t for t in figures["kpi-gain"]["data"] if t["name"].startswith("released"))
    assert gain["x"] == pytest.approx([out.predicted_gain_per_h]) and gain["y"] == pytest.approx(
        [out.realized_gain_per_h]
    )
    assert out.realized_gain_per_h == pytest.approx(out.predicted_gain_per_h + 4 * 0.5, rel=1e-9)  # 4/h per m


def test_an_unknown_period_is_a_404_and_the_page_needs_a_login(
    client: Any, make_user: Callable[..., Any], history: dict[str, Any]
) -> None:
    line = history["line"]
    assert client.get(f"/recommendations/{line.key}/kpis/").status_code == 302
    _login(client, make_user)
    assert client.get(f"/recommendations/{line.key}/kpis/?period=1y").status_code == 404
    assert client.get(f"/recommendations/{line.key}/kpis/").status_code == 200  # default: the last 24 hours


def test_the_outcome_include_draws_the_band_the_measured_line_and_the_release(history: dict[str, Any]) -> None:
    rec, n = history["rec"], history["horizon"]
    html = render_to_string("recommendations/_outcome.html", outcome_context(rec=rec))
    assert "the released plan&#x27;s prediction" in html or "the released plan's prediction" in html
    figure = _figures(html)[f"reco-{rec.pk}-outcome"]
    names = {t.get("name") for t in figure["data"]}
    assert {"predicted band", "measured", "predicted under the released plan", "release"} <= names
    measured = [t for t in figure["data"] if t.get("name") == "measured"]
    assert [len(t["y"]) for t in measured] == [n, n]
    marks = [s["x0"] for s in figure["layout"]["shapes"] if s.get("x0") == s.get("x1")]
    assert marks == [rec.decided_at.isoformat()] * 2  # the release mark, on each CV's panel
    table = html.split('<table class="outcome">')[1].split("</table>")[0]
    assert "lower_level_m" in table and "0.5000" in table  # mean |error| of the lower tank, in metres
