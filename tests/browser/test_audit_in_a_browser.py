"""An auditor logs in, filters the audit log, opens a proposal's decision chain and downloads an export in a real
browser; engineers and the data team see neither the log nor the export."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from tests.platform.recommendations.conftest import (  # noqa: F401 -- fixtures
    _fresh_caches,
    _one_torch_thread,
    ingest,
    line,
    onboard,
    promote,
    ready,
    trained,
)
from twinops.accounts.services import user_create
from twinops.recommendations.services import proposal_sign, recommendation_create

PASSWORD = "a-Long-password-1"
SCREENSHOTS = Path("/tmp/twinops-browser")


@pytest.fixture
def anchor_files(tmp_path: Path, settings: Any) -> None:
    """Keep the test's signing key and anchor log in its own tmp dir."""
    settings.TWINOPS_AUDIT_SIGNING_KEY = str(tmp_path / "audit-signing.key")
    settings.TWINOPS_AUDIT_ANCHOR_LOG = str(tmp_path / "anchors.jsonl")


@pytest.fixture
def _live_sessions_closed(live_server: Any) -> Iterator[None]:
    """End the live server's database sessions after the test, which would keep the test database from being dropped."""
    yield
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )


def log_in(browser: Any, url: str, username: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.goto(f"{url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_auditor_follows_a_proposal_from_the_log_to_its_decision_chain_and_exports_it(
    live_server: Any,
    browser: Any,
    ready: Any,  # noqa: F811 -- the imported fixture
    anchor_files: None,
    _live_sessions_closed: None,
) -> None:
    tanks, now = ready
    rec = recommendation_create(line=tanks, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    for name, role in (("ada", "engineer"), ("audrey", "auditor"), ("dana", "data")):
        user_create(username=name, role=role, password=PASSWORD, actor="system:test")
    proposal_sign(
        recommendation_id=rec.pk,
        actor=User.objects.get(username="ada"),
        decision="approve",
        now=now,
        client="test",
        password=PASSWORD,
    )
    SCREENSHOTS.mkdir(exist_ok=True)

    page = log_in(browser, live_server.url, "audrey")
    page.click("nav >> text=Audit log")
    page.wait_for_selector("#chain-status[data-ok=true]")
    assert "Verified through event" in page.inner_text("#chain-status")
    page.fill("#audit-filter input[name=action]", "proposal.approved")
    page.fill("#audit-filter input[name=line]", "tanks")
    page.click("#audit-filter button[type=submit]")
    page.wait_for_url("**/audit/?*action=proposal.approved*")
    rows = page.locator("#audit-events tbody tr")
    assert rows.count() == 1 and "ada" in rows.first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "audit-log.png"), full_page=True)

    page.click(f"#audit-events >> text=recommendations.recommendation:{rec.pk}")
    page.wait_for_url(f"**/audit/proposals/{rec.pk}/")
    assert page.inner_text("#decision-verified") == "verified"
    verdicts = page.eval_on_selector_all("#decision-links > li", "els => els.map(e => e.dataset.verified)")
    assert verdicts == ["true", "true", "true", "true", "none", "none"]
    assert "ada" in page.inner_text("[data-link=review]")
    page.screenshot(path=str(SCREENSHOTS / "audit-decision.png"), full_page=True)

    page.click("text=Audit log")
    with page.expect_download() as download:
        page.click("#audit-export button[type=submit]")
    bundle = zipfile.ZipFile(download.value.path())
    assert {"events.jsonl", "decisions.csv", "verify.py", "report.html"} <= set(bundle.namelist())
    assert str(rec.pk) in bundle.read("decisions.csv").decode()

    for name in ("ada", "dana"):  # an engineer and the data team: no link, no log, no export
        other = log_in(browser, live_server.url, name)
        assert other.locator("nav >> text=Audit log").count() == 0
        response = other.goto(f"{live_server.url}/audit/")
        assert response is not None and response.status == 403
        assert other.locator("#audit-export").count() == 0
        response = other.goto(f"{live_server.url}/audit/proposals/{rec.pk}/")
        assert response is not None and response.status == 403
