"""The recommendations page: what a plant engineer needs to judge a proposal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from twinops.recommendations.services import recommendation_create

from .conftest import ROWS, two_tanks


def _figures(html: str) -> dict[str, dict[str, Any]]:
    found = re.findall(
        r'<script type="application/json" class="plotly-figure" data-target="([^"]+)">(.*?)</script>', html, re.S
    )
    return {target: json.loads(text) for target, text in found}


def _login(client: Any, make_user: Callable[..., Any]) -> None:
    make_user("engineer", username="erin")
    assert client.login(username="erin", password="correct-horse-battery")


def test_the_page_shows_the_proposed_moves_and_draws_the_predictions_and_the_plan(
    client: Any, make_user: Callable[..., Any], ready: Any
) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    _login(client, make_user)
    response = client.get(f"/recommendations/{line.key}/")
    assert response.status_code == 200
    html = response.content.decode()
    current = rec.inputs["current_mv"]["pump_flow_m3_h"]
    proposed = rec.result["first_setpoint"]["pump_flow_m3_h"]
    moves = html.split('<table class="moves">')[1].split("</table>")[0]
    assert "pump_flow_m3_h" in moves and "[m3/h]" in moves
    assert f"{current:.4f}" in moves and f"{proposed:.4f}" in moves
    assert "0.6" in moves and "1.4" in moves and "0.05" in moves  # limits and max move
    assert f"{rec.expected_gain:.2f}" in html and "pending" in html
    assert "Twin correction" in html  # the engineer sees how far the twin is off on each CV now
    assert f"lower_level_m {rec.inputs['cv_bias']['lower_level_m']:.3f}" in html
    figures = _figures(html)
    assert set(figures) == {f"reco-{rec.pk}-cv", f"reco-{rec.pk}-mv"}
    cv = figures[f"reco-{rec.pk}-cv"]
    names = {t.get("name") for t in cv["data"]}
    assert {
        "predicted under the plan",
        "uncertainty band",
        "holding setpoints",
        "operating limit",
        "safety limit",
    } <= names
    planned = [t for t in cv["data"] if t.get("name") == "predicted under the plan"]
    assert [len(t["y"]) for t in planned] == [10, 10]  # one trace per CV over the 10-step horizon
    assert {s["y0"] for s in cv["layout"]["shapes"]} == {0.2, 9.0, 60.0}  # operating and safety limit lines
    mv = figures[f"reco-{rec.pk}-mv"]
    plan = next(t for t in mv["data"] if t.get("name") == "planned setpoint")
    assert plan["y"][0] == current and plan["y"][1:11] == rec.result["mv_plan"]["pump_flow_m3_h"]
    assert {s["y0"] for s in mv["layout"]["shapes"]} == {0.6, 1.4}


def test_a_withheld_recommendation_shows_its_reason_and_no_charts(
    client: Any, make_user: Callable[..., Any], line: Any, ingest: Callable[..., datetime]
) -> None:
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    _login(client, make_user)
    html = client.get(f"/recommendations/{line.key}/?id={rec.pk}").content.decode()
    assert "Withheld:</strong> no promoted twin" in html
    assert not _figures(html) and '<table class="moves">' not in html


def test_the_page_needs_a_login_and_an_existing_line_and_recommendation(
    client: Any, make_user: Callable[..., Any], line: Any
) -> None:
    assert client.get("/recommendations/tanks/").status_code == 302
    _login(client, make_user)
    assert "No recommendation has been made" in client.get("/recommendations/tanks/").content.decode()
    assert client.get("/recommendations/no-such-line/").status_code == 404
    assert client.get("/recommendations/tanks/?id=999999").status_code == 404
