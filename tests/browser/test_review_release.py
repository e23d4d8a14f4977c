"""Engineers review, sign and watch a proposal reach the simulated PLC in a real browser; other roles cannot sign."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from plantsim import build_simulator
from plantsim.plc import PlcServer
from tests.platform.releases import conftest as releases
from tests.platform.releases.conftest import LINE, OPERATOR, PASSWORD, SPEED, fresh_data

# The release tests' fixtures: a tiny heat-train twin (trained once), the line onboarded with it promoted, PLC configs.
heat_twin, release_line, plc_config = releases.heat_twin, releases.release_line, releases.plc_config
_release_settings = releases._release_settings  # autouse: trust the tiny twin, data fresh for a test's length

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIGNING_PASSWORD = "correct-horse-battery"  # make_user's
SCREENSHOTS = Path("/tmp/twinops-browser")


# --- the simulated plant, its release agent and a collector on a thread of their own ---------------------------------
class Plant:
    """Run the heat train's simulated PLC and the line's release agent on an event loop in a background thread."""

    def __init__(self, line: Any, config: Any, cert_dir: Path) -> None:
        self.line, self.config, self.cert_dir = line, config, cert_dir
        self.loop = asyncio.new_event_loop()
        self.ready: Future[PlcServer] = Future()
        self.thread = threading.Thread(target=self.loop.run_forever, name="plant", daemon=True)
        self._stop: asyncio.Event | None = None
        self._main: asyncio.Future[None] | None = None

    def __enter__(self) -> Plant:
        self.thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)  # type: ignore[assignment]
        self.plc = self.ready.result(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        try:
            self._main.result(timeout=60)  # type: ignore[union-attr]
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()

    def run(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run a coroutine on the plant's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout_s)

    async def _serve(self) -> None:
        from twinops.releases.agent import AgentConfig

        self._stop = asyncio.Event()
        try:
            async with PlcServer(self.config) as plc:
                agent_config = AgentConfig(
                    url=plc.endpoint_url,
                    fingerprint=plc.certificate_fingerprint,
                    cert_dir=self.cert_dir,
                    username=OPERATOR,
                    password=PASSWORD,
                    speed=SPEED,
                    poll_s=0.1,
                    reconnect_max_s=1.0,
                )
                agent = await asyncio.to_thread(_agent, self.line, agent_config)
                task = asyncio.create_task(agent.run(self._stop))
                self.ready.set_result(plc)
                try:
                    await self._stop.wait()
                finally:
                    await task
        except BaseException as e:
            if not self.ready.done():
                self.ready.set_exception(e)
            raise

    async def read_setpoints(self) -> dict[str, float]:
        """Read every MV setpoint from the PLC over OPC UA, as any client would (pinned SignAndEncrypt session)."""
        from twinops.opcua.client import connect_pinned, read_values

        nodes = {name: self.plc.node_id(name) for name in self.plc.simulator.setpoints}
        async with connect_pinned(
            self.plc.endpoint_url,
            fingerprint=self.plc.certificate_fingerprint,
            client_cert_dir=self.cert_dir,  # the certificate the PLC trusts (the platform's)
            username=OPERATOR,
            password=PASSWORD,
        ) as client:
            values = await read_values(client, list(nodes.values()))
        return {name: float(values[node]) for name, node in nodes.items()}


def _agent(line: Any, config: Any) -> Any:
    from django.db import connection

    from twinops.releases.agent import ReleaseAgent

    try:
        return ReleaseAgent(line=line, config=config)
    finally:
        connection.close()


class PlantClock:
    """Store the accelerated plant's samples as its collector would, stamped in plant time (SPEED times wall time)."""

    def __init__(self, line: Any, plant: Plant) -> None:
        self.line, self.plant = line, plant
        self.origin = datetime.now(UTC)
        self._origin_wall = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._collect, name="collector", daemon=True)

    def now(self) -> datetime:
        """Return the plant's time now."""
        return self.origin + timedelta(seconds=SPEED * (time.monotonic() - self._origin_wall))

    def __enter__(self) -> PlantClock:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def _collect(self) -> None:
        from django.db import connection

        from twinops.telemetry.batch import RawBatch
        from twinops.telemetry.services import samples_ingest

        names = {t.name for t in self.plant.plc.line.tags}
        period_wall = self.line.sample_period_s / SPEED
        try:
            while not self._stop.wait(period_wall):
                sim = self.plant.plc.simulator
                values = {**sim.last.values, **sim.setpoints}
                at = self.now()
                records = [(name, at, float(v)) for name, v in values.items() if name in names]
                samples_ingest(
                    line=self.line, batch=RawBatch.from_records(records), source="opcua", actor="system:test"
                )
        finally:
            connection.close()


@pytest.fixture(autouse=True)
def _quick_password_hashes(settings: Any) -> None:
    # These tests check that a password is asked for and checked, not how slowly it is hashed: Django's default
    # (PBKDF2, a million rounds) costs most of a second per user made, login and signature on a shared machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def plant(release_line: Any, plc_config: Callable[..., Any], tmp_path: Path) -> Iterator[Plant]:
    """The heat train's simulated PLC (fast plant) with the line's release agent serving it."""
    with Plant(release_line, plc_config(), tmp_path / "client") as running:
        yield running


# --- helpers -----------------------------------------------------------------------------------------------------------
def pending_proposal(line: Any, plc: Any) -> Any:
    """Store fresh data of the plant and let the recommender make the line's pending proposal."""
    from twinops.recommendations.services import recommendation_create

    fresh_data(line, plc)
    rec = recommendation_create(line=line, actor="system:test")
    assert rec.status == "pending", rec.reason
    return rec


def log_in(browser: Any, base_url: str, username: str) -> Any:
    """Open a page and log in through the login form."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(f"{base_url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", SIGNING_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page


def review_url(base_url: str, rec: Any) -> str:
    return f"{base_url}/lines/{rec.line.key}/proposals/{rec.pk}/"


def approve_on_page(page: Any, comment: str = "") -> None:
    """Sign the approve form with the password and wait for the page that follows."""
    form = page.locator("form[aria-label=Approve]")
    if comment:
        form.locator("input[name=reason]").fill(comment)
    form.locator("input[name=password]").fill(SIGNING_PASSWORD)
    with page.expect_navigation():
        page.click("#approve")


def number(text: str) -> float:
    return float(text.replace(",", "").strip())


def written_table(page: Any) -> list[dict[str, Any]]:
    """Return the release's writes table: step, MV, value written and read back, status."""
    rows = page.eval_on_selector_all(
        "#release table.writes tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    return [
        {"step": int(r[0]), "tag": r[1], "value": number(r[2]), "read_back": number(r[3]), "status": r[5]} for r in rows
    ]


# --- the tests ------------------------------------------------------------------------------------------------------
def test_an_engineer_approves_in_the_browser_watches_the_release_reach_the_plc_and_later_sees_the_outcome(
    live_server: Any, browser: Any, make_user: Any, plant: Plant, release_line: Any
) -> None:
    from twinops.recommendations.outcomes import MARGIN_PERIODS
    from twinops.recommendations.services import outcomes_record

    make_user("engineer", username="erin")
    rec = pending_proposal(release_line, plant.plc)
    before = plant.run(plant.read_setpoints())
    SCREENSHOTS.mkdir(exist_ok=True)

    page = log_in(browser, live_server.url, "erin")
    page.goto(f"{live_server.url}/lines/{LINE}/")
    assert "mode: advisory" in page.inner_text(".page-head")
    page.click(".actions >> text=Recommendations")
    page.wait_for_url(f"**/recommendations/{LINE}/")
    page.click(f"a[href$='/proposals/{rec.pk}/']:has-text('review')")
    page.wait_for_url(f"**/proposals/{rec.pk}/")
    assert page.inner_text("#proposal-status") == "pending"
    page.wait_for_selector("#approve")

    with PlantClock(release_line, plant) as clock:
        approve_on_page(page, comment="browser test")
        assert page.inner_text("#proposal-status") == "approved"
        # The release partial polls itself every 2 s: the page follows the agent without a reload.
        steps = len(next(iter(rec.plan["mv_plan"].values())))
        page.evaluate("window.sameDocument = true")
        running = page.wait_for_selector("#release-state:has-text('running')", timeout=30_000).inner_text()
        done = int(running.split("step ", 1)[1].split(" of", 1)[0])
        assert f"of {steps}" in running and done < steps, running
        assert page.locator("#stop-release").is_visible()  # an engineer may stop it while it runs
        state = page.wait_for_selector("#release-state:has-text('finished')", timeout=60_000)
        assert page.evaluate("window.sameDocument") is True
        assert f"step {steps} of {steps}" in state.inner_text()
        assert page.locator("#stop-release").count() == 0
        assert page.get_attribute("#release .progress", "aria-valuenow") == "100"
        page.screenshot(path=str(SCREENSHOTS / "release.png"), full_page=True)
        writes = written_table(page)
        on_plc = plant.run(plant.read_setpoints())

        # Each write was read back equal, and what the PLC holds now is the last step's value shown on the page.
        assert writes and all(w["status"] == "verified" and w["read_back"] == w["value"] for w in writes)
        last = max(w["step"] for w in writes)
        shown = {w["tag"]: w["value"] for w in writes if w["step"] == last}
        assert set(shown) == set(on_plc)
        for tag, value in shown.items():
            assert on_plc[tag] == pytest.approx(value, abs=5e-5), tag  # the page shows 4 decimals
        assert any(abs(on_plc[t] - before[t]) > 1e-3 for t in on_plc), (before, on_plc)  # the setpoint moved

        # Once the horizon has passed in plant time, the outcome is recorded (beat's job; called here directly).
        rec.refresh_from_db()
        due = rec.decided_at + timedelta(seconds=release_line.sample_period_s * (steps + 1 + MARGIN_PERIODS))
        deadline = time.monotonic() + 60
        while clock.now() < due:
            assert time.monotonic() < deadline, "the plant clock never reached the end of the horizon"
            page.wait_for_timeout(200)
        assert outcomes_record(now=clock.now()) == 1

    page.reload()
    outcome = page.locator("section[aria-labelledby=outcome-heading]")
    outcome.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for()
    assert "against the released plan's prediction" in outcome.inner_text()
    assert "Inside the band" in outcome.inner_text() and "No outcome yet" not in outcome.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "outcome.png"), full_page=True)


def _heat_line_with_dual_approval(line: Any) -> Any:
    """Give the heat train's spec a tiny dual-approval threshold on every MV (a new spec version)."""
    from twinops.lines.services import spec_version_create

    document = yaml.safe_load(line.current_spec.source_text)
    for tag in document["tags"]:
        if tag["role"] == "MV":
            tag["dual_approval_above"] = 1e-6
    spec_version_create(
        line=line, text=yaml.safe_dump(document, sort_keys=False), filename="heat-train.yaml",
        actor="system:test", reason="two engineers sign every move",
    )  # fmt: skip
    line.refresh_from_db()
    return line


def _plant_without_plc() -> Any:
    """Return the simulated heat train without its OPC UA server: enough to store fresh data."""
    sim = build_simulator(LINE, seed=3)
    return SimpleNamespace(simulator=sim, line=sim.line)


def test_a_dual_approval_proposal_needs_a_second_engineer(
    live_server: Any, browser: Any, make_user: Any, release_line: Any
) -> None:
    line = _heat_line_with_dual_approval(release_line)
    make_user("engineer", username="erin")
    make_user("engineer", username="ezra")
    rec = pending_proposal(line, _plant_without_plc())

    first = log_in(browser, live_server.url, "erin")
    first.goto(review_url(live_server.url, rec))
    assert "Needs 2 signatures by different engineers" in first.inner_text("#decision-heading + *")
    approve_on_page(first)
    assert "needs a second engineer's signature before release" in first.inner_text("body")
    assert first.inner_text("#proposal-status") == "pending"
    assert first.locator("form[aria-label=Approve], form[aria-label=Reject]").count() == 0
    assert "a second engineer must sign it" in first.inner_text("#not-signable")

    second = log_in(browser, live_server.url, "ezra")
    second.goto(review_url(live_server.url, rec))
    assert "approved for release by erin" in second.inner_text(".signatures")
    approve_on_page(second)
    assert second.inner_text("#proposal-status") == "approved"
    signers = second.inner_text(".signatures")
    assert "by erin" in signers and "by ezra" in signers
    rec.refresh_from_db()
    assert rec.status == "approved"
    assert sorted(rec.signatures.values_list("username", flat=True)) == ["erin", "ezra"]


def test_the_data_and_auditor_roles_see_no_approve_button_and_get_403_when_posting(
    live_server: Any, browser: Any, make_user: Any, release_line: Any
) -> None:
    rec = pending_proposal(release_line, _plant_without_plc())
    url = review_url(live_server.url, rec)
    for role in ("data", "auditor"):
        make_user(role, username=f"x-{role}")
        page = log_in(browser, live_server.url, f"x-{role}")
        page.goto(url)
        assert page.inner_text("#proposal-status") == "pending"
        assert page.locator("#approve").count() == 0 and page.locator("#reject").count() == 0
        assert "Only an engineer (or admin) can approve or reject proposals." in page.inner_text("#not-signable")

        # Posting the sign form directly, with this session's CSRF token (the logout form's), is refused.
        token = page.get_attribute("input[name=csrfmiddlewaretoken]", "value")
        answer = page.request.post(
            url + "sign/",
            form={"csrfmiddlewaretoken": token, "decision": "approve", "password": SIGNING_PASSWORD},
            headers={"Referer": url},
        )
        assert answer.status == 403, role
        assert "This needs the permission to" in answer.text()  # refused for the role, not for a bad CSRF token
        page.context.close()
    rec.refresh_from_db()
    assert rec.status == "pending" and not rec.signatures.exists()
