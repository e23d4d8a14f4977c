"""A line's mode decides what its proposals are: none when off, tracked-only in shadow, reviewable in advisory."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from twinops.audit.models import AuditEvent
from twinops.lines.services import line_mode_set
from twinops.recommendations.selectors import lines_to_recommend
from twinops.recommendations.services import recommendation_create

pytestmark = pytest.mark.django_db


def test_a_new_line_starts_in_shadow_mode(onboard: Any) -> None:
    assert onboard().mode == "shadow"


def test_a_shadow_line_gets_a_proposal_that_cannot_be_reviewed(ready: tuple[Any, Any]) -> None:
    line, now = ready
    line_mode_set(line=line, mode="shadow", actor="system:test", reason="commissioning")
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "shadow"
    assert rec.has_proposal


def test_an_off_line_gets_no_proposal_and_is_not_fanned_out(ready: tuple[Any, Any]) -> None:
    line, now = ready
    line_mode_set(line=line, mode="off", actor="system:test", reason="shutdown for maintenance")
    assert line.pk not in lines_to_recommend()
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "withheld"
    assert "the line is off" in rec.reason


def test_changing_the_mode_is_audited_with_its_reason_and_who(line: Any) -> None:
    line_mode_set(line=line, mode="shadow", actor="system:test", reason="back to commissioning")
    event = AuditEvent.objects.filter(action="line.mode_changed").order_by("-id").first()
    assert event is not None
    assert (event.before, event.after, event.reason) == (
        {"mode": "advisory"},
        {"mode": "shadow"},
        "back to commissioning",
    )
    line.refresh_from_db()
    assert (line.mode, line.mode_reason, line.mode_changed_by_label) == (
        "shadow",
        "back to commissioning",
        "system:test",
    )


def test_a_mode_change_needs_a_reason_and_a_known_mode(line: Any) -> None:
    with pytest.raises(ValueError, match="reason"):
        line_mode_set(line=line, mode="shadow", actor="system:test", reason="  ")
    with pytest.raises(ValueError, match="mode must be one of"):
        line_mode_set(line=line, mode="autonomous", actor="system:test", reason="why not")
    line.refresh_from_db()
    assert line.mode == "advisory"


@pytest.mark.parametrize("role", ["data", "auditor"])
def test_only_engineers_and_admins_may_change_the_mode(line: Any, role: str) -> None:
    from twinops.accounts.services import user_create

    user = user_create(username=f"u_{role}", role=role, password="a-Long-password-1", actor="system:test")
    with pytest.raises(PermissionDenied):
        line_mode_set(line=line, mode="off", actor=user, reason="I would like to")
    engineer = user_create(username="eng", role="engineer", password="a-Long-password-1", actor="system:test")
    line_mode_set(line=line, mode="off", actor=engineer, reason="maintenance")
    line.refresh_from_db()
    assert line.mode == "off"
