"""A data engineer logs in, onboards a line from its spec and history in a real browser, and sees its chart drawn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("twinops.telemetry.selectors", reason="the telemetry app has not landed yet")

SPEC = """\
schema_version: 1
line:
  id: browser-line
  name: Browser test line
  site: Test site
  area: Utilities
  sample_period_s: 60
tags:
  - name: level
    role: CV
    unit: m
    physical_range: [0, 10]
    limits: {low: 2, high: 8}
  - name: pump
    role: MV
    unit: V
    physical_range: [0, 12]
    limits: {low: 1, high: 10}
  - name: inflow
    role: DV
    unit: l/s
    physical_range: [0, 5]
"""

SCREENSHOTS = Path("/tmp/twinops-browser")


def history_csv(rows: int = 180) -> bytes:
    """Return a wide CSV: one row a minute up to now, with one historian 'Bad' value and one unknown column value."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    lines = ["timestamp,level,pump,inflow"]
    for i in range(rows):
        at = (end - timedelta(minutes=rows - 1 - i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        level = "Bad" if i == 50 else f"{5 + 2 * ((i % 30) - 15) / 15:.3f}"
        lines.append(f"{at},{level},{6 + (i % 10) * 0.2:.2f},{2 + (i % 7) * 0.1:.2f}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_data_engineer_onboards_a_line_in_the_browser_and_sees_its_chart(
    live_server: Any, ingest_worker: Any, browser: Any, make_user: Any
) -> None:
    make_user("data", username="dana", password="correct-horse-battery")
    SCREENSHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)

    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", "dana")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.click("text=Onboard a line")
    page.set_input_files(
        "input[name=spec]",
        files=[{"name": "browser-line.yaml", "mimeType": "application/x-yaml", "buffer": SPEC.encode()}],
    )
    page.click("button:has-text('Check spec')")
    page.wait_for_selector("text=is valid: 3 tags")
    page.screenshot(path=str(SCREENSHOTS / "preview.png"), full_page=True)

    page.set_input_files(
        "input[name=history]", files=[{"name": "history.csv", "mimeType": "text/csv", "buffer": history_csv()}]
    )
    page.fill("input[name=reason]", "browser test")
    page.click("button:has-text('Create line')")
    page.wait_for_url("**/imports/*/")
    progress = page.wait_for_selector(
        "#import-progress[data-status=done], #import-progress[data-status=failed]", timeout=90_000
    )
    assert progress.get_attribute("data-status") == "done", progress.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "import.png"), full_page=True)
    assert "Import finished" in page.inner_text("#import-progress")

    page.click("text=Open Browser test line")
    page.wait_for_url("**/lines/browser-line/")
    page.wait_for_selector(".main-svg")
    page.wait_for_function("document.querySelectorAll('.scatterlayer .trace').length > 0")
    assert page.locator(".scatterlayer .trace").count() > 0
    # The lines are drawn through their points (the figure's x and y arrive as typed arrays), on a date axis.
    vertices = page.evaluate(
        "Math.max(...[...document.querySelectorAll('.scatterlayer .trace .js-line')]"
        ".map(p => (p.getAttribute('d') || '').split(/[LM]/).length - 1))"
    )
    assert vertices > 10, vertices
    assert page.evaluate("document.querySelector('.js-plotly-plot')._fullLayout.xaxis.type") == "date"
    # Dropping a tag swaps in a new chart partial (htmx) without reloading the page: one panel fewer.
    panels = page.locator(".js-plotly-plot .scatterlayer").count()
    page.evaluate("window.sameDocument = true")
    page.uncheck("input[name=tags][value=pump]")
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .scatterlayer').length === {panels - 1}"
        " && document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length > 0"
    )
    assert page.evaluate("window.sameDocument") is True
    # Plotly's own stylesheet still applies to the swapped-in chart (its layers stacked, titles in place).
    positions = page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot .main-svg')].map(e => getComputedStyle(e).position)"
    )
    assert positions and set(positions) == {"absolute"}
    assert "tags=level" in page.url and "tags=pump" not in page.url  # the address bar follows the choice
    page.screenshot(path=str(SCREENSHOTS / "line.png"), full_page=True)
