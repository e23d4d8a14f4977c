"""Which proposal the agent releases next: an approval without a signed plan fails at once, never hangs."""

from __future__ import annotations

import pytest

from .conftest import approve

pytestmark = pytest.mark.django_db


def test_an_approval_without_a_signed_plan_fails_with_an_alarm_instead_of_waiting_for_ever(
    release_line, make_user
) -> None:
    from twinops.audit.models import AuditEvent
    from twinops.releases.selectors import release_alarm
    from twinops.releases.services import release_next

    rec = approve(release_line, {"F_feed": 20.0}, {"F_feed": [20.3]}, engineer=make_user("engineer"))
    rec.approved_plan = None  # an approval stored without its plan (a bug or a hand edit): nothing to release
    rec.save(update_fields=["approved_plan"])

    assert release_next(line=release_line) is None  # nothing running
    release = rec.release
    assert (release.status, release.steps, release.writes.count()) == ("failed", 0, 0)
    assert "has no signed plan to release; nothing written" in release_alarm(line=release_line).message
    assert AuditEvent.objects.filter(action="release.failed", object_id=str(release.pk)).exists()
    assert release_next(line=release_line) is None  # and it is not tried again
