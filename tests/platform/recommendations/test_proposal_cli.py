"""`twinops proposal list|show|approve|reject` and `twinops line mode` from a terminal or a script."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from twinops.accounts.services import user_create
from twinops.audit.models import AuditEvent
from twinops.core.logins import login_failures_clear
from twinops.recommendations.models import Recommendation
from twinops.recommendations.services import recommendation_create

pytestmark = pytest.mark.django_db
PASSWORD = "a-Long-password-1"


@pytest.fixture
def pending(ready: tuple[Any, Any]) -> Recommendation:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    Recommendation.objects.filter(pk=rec.pk).update(expires_at=timezone.now() + (rec.expires_at - rec.created_at))
    user_create(username="ada", role="engineer", password=PASSWORD, actor="system:test")
    login_failures_clear(username="ada", client="cli")
    return rec


def run(*args: str, stdin: str = "") -> str:
    out = io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out)
    finally:
        sys.stdin = saved
    return out.getvalue()


def test_list_and_show_print_the_proposal(pending: Recommendation) -> None:
    listing = run("proposal", "list", "tanks")
    assert f"{pending.pk:>7}  pending" in listing
    shown = json.loads(run("proposal", "show", str(pending.pk)))
    assert shown["status"] == "pending" and shown["mode"] == "advisory" and shown["signatures"] == []


def test_approve_with_the_password_on_stdin_signs(pending: Recommendation) -> None:
    out = run("proposal", "approve", str(pending.pk), "--as", "ada", "--reason", "ok", stdin=PASSWORD + "\n")
    assert f"Proposal {pending.pk} is approved (signed by ada)." in out
    pending.refresh_from_db()
    assert pending.status == "approved" and pending.signatures.get().username == "ada"


def test_a_wrong_password_is_one_clear_line_and_audited(pending: Recommendation) -> None:
    with pytest.raises(CommandError, match="Wrong password: nothing was signed."):
        run("proposal", "approve", str(pending.pk), "--as", "ada", stdin="wrong\n")
    assert AuditEvent.objects.filter(action="proposal.signature_refused").exists()


def test_reject_needs_a_reason_and_an_unknown_proposal_is_named(pending: Recommendation) -> None:
    with pytest.raises(CommandError):
        run("proposal", "reject", str(pending.pk), "--as", "ada", stdin=PASSWORD + "\n")
    with pytest.raises(CommandError, match="no proposal 999999"):
        run("proposal", "show", "999999")
    out = run("proposal", "reject", str(pending.pk), "--as", "ada", "--reason", "cleaning", stdin=PASSWORD + "\n")
    assert "rejected" in out


def test_line_mode_from_the_command_line_is_audited(pending: Recommendation) -> None:
    out = run("line", "mode", "tanks", "shadow", "--reason", "retuning")
    assert "now in shadow mode" in out
    event = AuditEvent.objects.filter(action="line.mode_changed").order_by("-id").first()
    assert event is not None and event.reason == "retuning" and event.actor_label.startswith("cli:")
