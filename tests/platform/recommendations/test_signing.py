"""Engineers sign proposals: approve (all or smaller moves), reject with a reason; the signature binds the content."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from tests.platform.recommendations.conftest import ROWS, SPEC, two_tanks
from twinops.accounts.services import user_create
from twinops.audit.models import AuditEvent
from twinops.core.logins import login_failures_clear
from twinops.lines.services import line_mode_set, spec_version_create
from twinops.recommendations.models import Recommendation
from twinops.recommendations.selectors import proposal_content_sha256
from twinops.recommendations.services import SigningError, proposal_sign, recommendation_create

pytestmark = pytest.mark.django_db
PASSWORD = "a-Long-password-1"
MV = "pump_flow_m3_h"


def person(username: str, role: str = "engineer") -> Any:
    user = user_create(username=username, role=role, password=PASSWORD, actor="system:test")
    user.first_name, user.last_name = username.capitalize(), "Tester"
    user.save()
    return user


@pytest.fixture
def proposal(ready: tuple[Any, Any]) -> tuple[Recommendation, Any]:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    return rec, now


def sign(rec: Recommendation, user: Any, now: Any, decision: str = "approve", **kw: Any) -> Recommendation:
    kw.setdefault("password", PASSWORD)
    return proposal_sign(recommendation_id=rec.pk, actor=user, decision=decision, now=now, client="test", **kw)


def refused(rec: Recommendation) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="proposal.signature_refused", object_id=str(rec.pk)))


def test_an_approval_records_who_when_what_and_the_hash_of_the_exact_content(proposal: Any) -> None:
    rec, now = proposal
    ada = person("ada")
    rec = sign(rec, ada, now + timedelta(seconds=30), reason="looks right")
    assert rec.status == "approved"
    [sig] = rec.signatures.all()
    assert (sig.username, sig.full_name, sig.meaning, sig.reason) == ("ada", "Ada Tester", "approved", "looks right")
    assert sig.signed_at == now + timedelta(seconds=30) and sig.signed_at.utcoffset() == timedelta(0)
    assert sig.content_sha256 == proposal_content_sha256(rec, scale=1.0)
    assert rec.approved_plan["mv_plan"][MV] == list(rec.result["mv_plan"][MV])
    assert rec.approved_plan["content_sha256"] == sig.content_sha256
    event = AuditEvent.objects.get(action="proposal.approved", object_id=str(rec.pk))
    assert event.actor_label == "ada" and event.after["signatures"][0]["content_sha256"] == sig.content_sha256


def test_a_rejection_needs_a_reason_and_is_signed(proposal: Any) -> None:
    rec, now = proposal
    bob = person("bob")
    with pytest.raises(SigningError, match="reason"):
        sign(rec, bob, now, "reject")
    rec = sign(rec, bob, now, "reject", reason="the feed tank is being cleaned")
    assert rec.status == "rejected"
    assert rec.signatures.get().meaning == "rejected"
    assert AuditEvent.objects.get(action="proposal.rejected").reason == "the feed tank is being cleaned"


def test_a_wrong_password_signs_nothing_is_audited_and_counts_like_a_failed_login(proposal: Any) -> None:
    rec, now = proposal
    ada = person("ada")
    login_failures_clear(username="ada", client="test")  # the cache outlives test transactions
    with override_settings(LOGIN_RATE_LIMIT=3):
        for _ in range(3):
            with pytest.raises(SigningError, match="Wrong password"):
                sign(rec, ada, now, password="not-it")
        with pytest.raises(SigningError, match="Too many failed password attempts"):
            sign(rec, ada, now)  # the right password, but locked out like a login would be
    login_failures_clear(username="ada", client="test")
    rec.refresh_from_db()
    assert rec.status == "pending" and not rec.signatures.exists()
    assert [e.reason for e in refused(rec)][:3] == ["wrong password"] * 3


@pytest.mark.parametrize("role", ["data", "auditor"])
def test_other_roles_cannot_sign(proposal: Any, role: str) -> None:
    rec, now = proposal
    with pytest.raises(PermissionDenied):
        sign(rec, person(f"x_{role}", role), now)
    rec.refresh_from_db()
    assert rec.status == "pending" and not rec.signatures.exists()


def test_an_expired_proposal_cannot_be_signed(proposal: Any) -> None:
    rec, now = proposal
    with pytest.raises(SigningError, match="expired"):
        sign(rec, person("ada"), rec.expires_at + timedelta(seconds=1))
    assert refused(rec)[0].reason.startswith(f"Proposal {rec.pk} expired")


def test_a_superseded_proposal_cannot_be_signed(proposal: Any, ingest: Any) -> None:
    rec, now = proposal
    last = ingest(rec.line, two_tanks(ROWS, seed=2)[-60:], start=now + timedelta(seconds=5))
    later = last + timedelta(seconds=5)  # a later slot, with fresh data
    newer = recommendation_create(line=rec.line, actor="system:test", now=later)
    assert newer.pk != rec.pk and newer.status == "pending", newer.reason
    rec.refresh_from_db()
    with pytest.raises(SigningError, match="superseded"):
        sign(rec, person("ada"), later)


def test_approving_twice_is_refused(proposal: Any) -> None:
    rec, now = proposal
    sign(rec, person("ada"), now)
    with pytest.raises(SigningError, match="already approved"):
        sign(rec, person("bob"), now)


def test_a_withheld_or_shadow_proposal_cannot_be_signed(ready: tuple[Any, Any]) -> None:
    line, now = ready
    line_mode_set(line=line, mode="shadow", actor="system:test", reason="commissioning")
    rec = recommendation_create(line=line, actor="system:test", now=now)
    with pytest.raises(SigningError, match="shadow"):
        sign(rec, person("ada"), now)
    line_mode_set(line=line, mode="off", actor="system:test", reason="stop")
    off = recommendation_create(line=line, actor="system:test", now=now + timedelta(seconds=600))
    with pytest.raises(SigningError, match="withheld"):
        sign(off, person("bob"), now)


def test_a_line_no_longer_in_advisory_mode_refuses_signatures(proposal: Any) -> None:
    rec, now = proposal
    line_mode_set(line=rec.line, mode="shadow", actor="system:test", reason="back to commissioning")
    with pytest.raises(SigningError, match="shadow mode"):
        sign(rec, person("ada"), now)


def test_a_big_move_needs_two_different_engineers(proposal: Any, ingest: Any) -> None:
    rec, now = proposal
    spec_dual = SPEC.replace("max_move_per_step: 0.05}", "max_move_per_step: 0.05, dual_approval_above: 0.000001}")
    spec_version_create(line=rec.line, text=spec_dual, filename="tanks.yaml", actor="system:test", reason="dual")
    last = ingest(rec.line, two_tanks(ROWS, seed=2)[-60:], start=now + timedelta(seconds=5))
    now = last + timedelta(seconds=5)
    again = recommendation_create(line=rec.line, actor="system:test", now=now)
    assert again.status == "pending", again.reason
    ada, bob = person("ada"), person("bob")
    first = sign(again, ada, now + timedelta(seconds=1))
    assert first.status == "pending" and first.signatures.count() == 1
    assert AuditEvent.objects.filter(action="proposal.signed", object_id=str(again.pk)).exists()
    with pytest.raises(SigningError, match="already signed"):
        sign(again, ada, now + timedelta(seconds=2))
    second = sign(again, bob, now + timedelta(seconds=3))
    assert second.status == "approved"
    assert {s.username for s in second.signatures.all()} == {"ada", "bob"}


def test_a_signature_no_longer_applies_once_the_spec_changes(proposal: Any) -> None:
    rec, now = proposal
    sign(rec, person("ada"), now)
    rec.refresh_from_db()
    signed = rec.signatures.get().content_sha256
    tighter = SPEC.replace("limits: {low: 0.6, high: 1.4}", "limits: {low: 0.6, high: 1.3}")
    spec_version_create(line=rec.line, text=tighter, filename="tanks.yaml", actor="system:test", reason="tighter")
    rec.line.refresh_from_db()
    assert proposal_content_sha256(rec, scale=1.0) != signed


def test_a_pending_proposal_on_an_old_spec_cannot_be_signed(proposal: Any) -> None:
    rec, now = proposal
    tighter = SPEC.replace("limits: {low: 0.6, high: 1.4}", "limits: {low: 0.6, high: 1.3}")
    spec_version_create(line=rec.line, text=tighter, filename="tanks.yaml", actor="system:test", reason="tighter")
    with pytest.raises(SigningError, match="spec of line tanks changed"):
        sign(Recommendation.objects.get(pk=rec.pk), person("ada"), now)


def test_approving_smaller_moves_re_simulates_the_scaled_plan_and_signs_that(proposal: Any) -> None:
    rec, now = proposal
    rec = sign(rec, person("ada"), now, scale=0.5)
    start = rec.inputs["current_mv"][MV]
    full = rec.result["mv_plan"][MV]
    assert rec.approved_plan["scale"] == 0.5
    assert rec.approved_plan["mv_plan"][MV] == pytest.approx([start + 0.5 * (v - start) for v in full])
    assert rec.approved_plan["cv_mean"] != rec.result["cv_mean"]  # predicted again for the smaller moves
    assert rec.signatures.get().content_sha256 == proposal_content_sha256(rec, scale=0.5)
    assert rec.signatures.get().content_sha256 != proposal_content_sha256(rec, scale=1.0)


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, float("nan")])
def test_a_scale_outside_0_to_100_percent_is_refused(proposal: Any, scale: float) -> None:
    rec, now = proposal
    with pytest.raises(SigningError, match="scale"):
        sign(rec, person("ada"), now, scale=scale)
