"""The review page: an engineer decides on a proposal in the browser; other roles see it but cannot sign."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from twinops.accounts.services import user_create
from twinops.audit.models import AuditEvent
from twinops.core.logins import login_failures_clear
from twinops.recommendations.models import Recommendation
from twinops.recommendations.services import recommendation_create

pytestmark = pytest.mark.django_db
PASSWORD = "a-Long-password-1"


def client_for(username: str, role: str) -> tuple[Client, Any]:
    user = user_create(username=username, role=role, password=PASSWORD, actor="system:test")
    c = Client()
    c.force_login(user)
    login_failures_clear(username=username, client="127.0.0.1")
    return c, user


@pytest.fixture
def pending(ready: tuple[Any, Any]) -> Recommendation:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    # the page and the form work on the wall clock: keep the proposal valid and its data fresh for them
    Recommendation.objects.filter(pk=rec.pk).update(expires_at=timezone.now() + (rec.expires_at - rec.created_at))
    rec.refresh_from_db()
    return rec


def url(rec: Recommendation, sign: bool = False) -> str:
    return f"/lines/{rec.line.key}/proposals/{rec.pk}/" + ("sign/" if sign else "")


def test_the_engineer_sees_moves_limits_trust_and_the_sign_forms(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    page = c.get(url(pending)).content.decode()
    assert "pump_flow_m3_h" in page and "Largest move in plan" in page and "Max move / step" in page
    assert "OOD score" in page and "Expected gain" in page and "mode: advisory" in page
    spread = pending.result["objective_gain_spread"]
    assert spread is not None and f"± {spread:,.2f}" in page  # the gain with the members' disagreement about it
    coverage = pending.result["band_coverage"]
    assert coverage is not None and f"the twin's calibrated {coverage:.0%} interval" in page  # what the band is
    assert 'id="approve"' in page and 'id="reject"' in page and "expires in" in page


@pytest.mark.parametrize("role", ["data", "auditor"])
def test_other_roles_see_no_buttons_and_get_403_when_posting(pending: Recommendation, role: str) -> None:
    c, _ = client_for(f"x_{role}", role)
    page = c.get(url(pending)).content.decode()
    assert 'id="approve"' not in page
    assert "Only an engineer (or admin) can approve or reject proposals." in page
    answer = c.post(url(pending, sign=True), {"decision": "approve", "password": PASSWORD})
    assert answer.status_code == 403
    pending.refresh_from_db()
    assert pending.status == "pending" and not pending.signatures.exists()


def test_approving_in_the_form_signs_and_the_page_shows_the_signature(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    answer = c.post(url(pending, sign=True), {"decision": "approve", "password": PASSWORD, "scale_percent": "100"})
    assert answer.status_code == 302
    pending.refresh_from_db()
    assert pending.status == "approved"
    page = c.get(url(pending)).content.decode()
    assert "approved for release</strong> by ada" in page and "your signature is recorded" in page


def test_after_approving_smaller_moves_the_page_shows_the_plan_that_is_released(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    answer = c.post(url(pending, sign=True), {"decision": "approve", "password": PASSWORD, "scale_percent": "40"})
    assert answer.status_code == 302
    pending.refresh_from_db()
    page = c.get(url(pending)).content.decode()
    assert 'id="approved-smaller"' in page and "Approved with smaller moves (40 %)" in page
    [(name, steps)] = [(n, v) for n, v in pending.approved_plan["mv_plan"].items() if n == "pump_flow_m3_h"]
    full = pending.result["first_setpoint"][name]
    assert steps[0] != pytest.approx(full)  # the released first step is not the proposal's
    moves = page.split('id="moves-heading"', 1)[1].split("</table>", 1)[0]
    assert f"<strong>{steps[0]:,.4f}</strong>" in moves and f"<strong>{full:,.4f}</strong>" not in moves


def test_a_gain_all_ensemble_members_agree_on_is_shown_without_a_spread_of_zero(pending: Recommendation) -> None:
    plan = {**pending.result, "objective_gain_spread": 0.0}  # e.g. every priced term is a setpoint
    Recommendation.objects.filter(pk=pending.pk).update(result=plan)
    c, _ = client_for("ada", "engineer")
    page = c.get(url(pending)).content.decode()
    assert "± 0.00" not in page and "every member of the twin's ensemble predicts this gain" in page


def test_a_wrong_password_in_the_form_is_refused_with_a_clear_message(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    answer = c.post(url(pending, sign=True), {"decision": "approve", "password": "nope"}, follow=True)
    assert "Wrong password: nothing was signed." in answer.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert AuditEvent.objects.filter(action="proposal.signature_refused", reason="wrong password").exists()


def test_rejecting_without_a_reason_is_refused_by_the_form(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    answer = c.post(url(pending, sign=True), {"decision": "reject", "password": PASSWORD}, follow=True)
    assert "Give a reason for rejecting the proposal." in answer.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_a_proposal_of_another_line_is_404(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    assert c.get(f"/lines/{pending.line.key}/proposals/{pending.pk + 999}/").status_code == 404


def test_an_engineer_changes_the_mode_on_the_line_page_with_a_reason(pending: Recommendation) -> None:
    c, _ = client_for("ada", "engineer")
    key = pending.line.key
    refused = c.post(f"/lines/{key}/mode/", {"mode": "shadow", "reason": ""}, follow=True)
    assert "Give a reason for changing the mode." in refused.content.decode()
    done = c.post(f"/lines/{key}/mode/", {"mode": "shadow", "reason": "retuning the level loop"}, follow=True)
    assert "is now in shadow mode" in done.content.decode() and "mode: shadow" in done.content.decode()
    page = c.get(url(pending)).content.decode()
    assert 'id="approve"' not in page and "The line is in shadow mode" in page


def test_the_data_role_cannot_change_the_mode(pending: Recommendation) -> None:
    c, _ = client_for("dora", "data")
    assert c.post(f"/lines/{pending.line.key}/mode/", {"mode": "off", "reason": "x"}).status_code == 403


def test_the_release_shows_progress_each_read_back_and_an_engineer_can_stop_it(pending: Recommendation) -> None:
    from twinops.releases.models import Release, ReleaseWrite

    c, _ = client_for("ada", "engineer")
    c.post(url(pending, sign=True), {"decision": "approve", "password": PASSWORD})
    pending.refresh_from_db()
    waiting = c.get(url(pending) + "release/").content.decode()
    assert "waiting for the release agent" in waiting
    now = timezone.now()
    release = Release.objects.create(
        recommendation=pending, line=pending.line, started_at=now, steps=10, steps_done=1, last_written_at=now
    )
    ReleaseWrite.objects.create(
        release=release,
        step=0,
        tag="pump_flow_m3_h",
        node_id="ns=2;s=tanks.pump_flow_m3_h",
        value=1.05,
        claimed_at=now,
        written_at=now,
        read_back=1.05,
        read_at=now,
        status="verified",
    )
    partial = c.get(url(pending) + "release/").content.decode()
    assert "step 1 of 10" in partial and "1.05" in partial and 'aria-valuenow="10"' in partial
    assert 'id="stop-release"' in partial and 'hx-trigger="every 2s"' in partial
    stopped = c.post(url(pending) + "release/stop/", {"reason": "operator asked to hold"}, follow=True).content.decode()
    assert "Release stopped" in stopped
    release.refresh_from_db()
    assert release.status == "stopped" and "operator asked to hold" in release.reason
    viewer, _ = client_for("audrey", "auditor")
    assert viewer.post(url(pending) + "release/stop/", {"reason": "x"}).status_code == 403


def test_an_approved_proposal_of_a_line_without_plc_says_nothing_will_be_released_and_who_can_act(
    pending: Recommendation,
) -> None:
    c, _ = client_for("ada", "engineer")
    c.post(url(pending, sign=True), {"decision": "approve", "password": PASSWORD, "scale_percent": "100"})
    release = c.get(f"/lines/{pending.line.key}/proposals/{pending.pk}/release/").content.decode()
    assert 'id="no-plc"' in release
    assert "No PLC configured, so nothing is released to this line" in release
    assert "the data team can add one in the spec" in release
