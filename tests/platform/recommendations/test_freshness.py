"""One definition of fresh: the line's data-quality table warns about a tag exactly when the recommender withholds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from twinops.recommendations.services import recommendation_create
from twinops.telemetry.batch import RawBatch
from twinops.telemetry.services import samples_ingest

from .conftest import CVS, DV, MV, PERIOD_S, ROWS, two_tanks


def _store(line: Any, *, mv_silent_for_s: float) -> Any:
    """Store 60 rows of the two tanks ending 5 s ago; the MV's last rows are left out (a setpoint holding still)."""
    now = timezone.now().replace(microsecond=0)
    last = now - timedelta(seconds=5)
    values = two_tanks(ROWS, seed=1)[-60:]
    stamps = [last - timedelta(seconds=PERIOD_S * (59 - i)) for i in range(60)]
    names = (*CVS, MV, DV)
    records = [
        (name, stamps[i], float(values[i, j]))
        for i in range(60)
        for j, name in enumerate(names)
        if not (name == MV and (last - stamps[i]).total_seconds() < mv_silent_for_s)
    ]
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="test", actor="system:test")
    return now


def _quality_table(client: Any, make_user: Callable[..., Any], line: Any) -> str:
    make_user("engineer", username="erin")
    assert client.login(username="erin", password="correct-horse-battery")
    response = client.get(f"/lines/{line.key}/")
    assert response.status_code == 200
    return response.content.decode().split('id="quality-heading"')[1]


def _row(html: str, tag: str) -> str:
    return next(r for r in html.split("<tr") if f"</span> {tag} " in r)


def test_a_stale_setpoint_is_flagged_in_the_quality_table_with_the_recommenders_reason(
    client: Any, make_user: Callable[..., Any], line: Any, promote: Callable[..., Any]
) -> None:
    promote(line)
    now = _store(line, mv_silent_for_s=60)  # newest MV sample 65 s old: the limit is 3 periods = 30 s
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "withheld"
    assert rec.reason.startswith("data are stale (limit 30 s = 3 sample periods): newest good sample of pump_flow_m3_h")
    assert all(name not in rec.reason for name in (*CVS, DV))
    html = _quality_table(client, make_user, line)
    warning = html.split('<p class="warning" role="alert">')[1].split("</p>")[0]
    assert "1 tag not fresh" in warning and "withholds" in warning
    assert "newest good sample of pump_flow_m3_h is 6" in warning  # 65 or 66 s by the time the page is drawn
    assert 'class="badge stale"' in _row(html, MV)
    for tag in (*CVS, DV):
        assert 'class="badge ok">fresh<' in _row(html, tag)


def test_fresh_data_show_no_warning_and_are_not_withheld_as_stale(
    client: Any, make_user: Callable[..., Any], line: Any, promote: Callable[..., Any]
) -> None:
    promote(line)
    now = _store(line, mv_silent_for_s=0)
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert "stale" not in rec.reason and "quality" not in rec.reason
    html = _quality_table(client, make_user, line)
    assert 'role="alert"' not in html and "not fresh" not in html
    assert html.count('class="badge ok">fresh<') == 4


def test_a_bad_current_sample_is_flagged_as_bad_now_as_the_recommender_reports_it(
    client: Any, make_user: Callable[..., Any], line: Any, promote: Callable[..., Any]
) -> None:
    promote(line)
    now = _store(line, mv_silent_for_s=0)
    samples_ingest(
        line=line,
        batch=RawBatch.from_records([(CVS[1], now - timedelta(seconds=2), "Scan Timeout")]),
        source="test",
        actor="system:test",
    )
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert (
        rec.status == "withheld" and "current CV sample of lower_level_m has bad quality (Scan Timeout)" in rec.reason
    )
    html = _quality_table(client, make_user, line)
    assert "current CV sample of lower_level_m has bad quality (Scan Timeout)" in html
    assert 'class="badge bad"' in _row(html, CVS[1])
