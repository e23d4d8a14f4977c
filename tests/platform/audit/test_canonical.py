"""Every value that can be stored verifies bit for bit; a value that cannot be stored is refused before anything is."""

from __future__ import annotations

import json
import math

import pytest
from django.db import connection, transaction

from twinops.audit.canonical import canonical_around_id, canonical_dumps
from twinops.audit.chain import legacy_digest
from twinops.audit.models import AuditEvent
from twinops.audit.selectors import audit_event_values
from twinops.audit.services import GENESIS_SHA256, audit_chain_verify, audit_record

pytestmark = pytest.mark.django_db

AWKWARD = {
    "negative_zero": -0.0,
    "huge": 1e20,
    "past_2_53": 1e16 + 2,  # 10000000000000002.0: jsonb hands it back as an integer
    "tiny": 5e-324,
    "long_text": "x" * 2_000_000 + "é",
    "non_ascii": "Temperatur Δ 25 °C · 反应器 · 🙂",
    "nested": [{"b": 1.5, "a": [-0.0, 1e300]}],
    "flag": True,
}


def test_awkward_values_round_trip_exactly_and_verify(make_user) -> None:
    with transaction.atomic():
        event = audit_record(actor=make_user("data"), action="test.done", object_type="x", object_id="1", after=AWKWARD)
    stored = audit_event_values(AuditEvent.objects.get(pk=event.pk))["after"]
    assert json.dumps(stored, sort_keys=True) == json.dumps(AWKWARD, sort_keys=True)  # repr-exact floats, same text
    assert math.copysign(1.0, stored["negative_zero"]) == -1.0
    check = audit_chain_verify()
    assert check.ok and check.checked == 1


def test_non_ascii_reason_and_object_id_verify(make_user) -> None:
    with transaction.atomic():
        audit_record(
            actor=make_user("data"), action="line.created", object_type="x", object_id="Ω-7", reason="Prüfung ✓"
        )
    assert audit_chain_verify().ok


@pytest.mark.parametrize(
    "after,field",
    [
        ({"gain": math.nan}, "after.gain"),
        ({"rows": [1.0, math.inf]}, r"after.rows\[1\]"),
        ({"note": "a\x00b"}, "after.note"),
    ],
)
def test_a_value_that_cannot_be_stored_is_refused_and_nothing_is_stored(make_user, after, field) -> None:
    user = make_user("data")
    events = AuditEvent.objects.count()
    with pytest.raises(ValueError, match=field), transaction.atomic():
        user.first_name = "changed"  # the business change the event was to record
        user.save()
        audit_record(actor=user, action="user.renamed", obj=user, after=after)
    user.refresh_from_db()
    assert (user.first_name, AuditEvent.objects.count()) == ("", events)


def test_events_written_before_the_canonical_scheme_still_verify(make_user) -> None:
    fields = {
        "id": 1,
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "actor": "system:old",
        "action": "line.created",
        "object_type": "lines.line",
        "object_id": "1",
        "reason": "",
        "before": None,
        "after": {"limit": 3},
    }
    digest = legacy_digest(prev_sha256=GENESIS_SHA256, fields=fields)
    with connection.cursor() as cur:  # a row as the old code wrote it: no canonical text, scheme 1
        cur.execute(
            "INSERT INTO audit_auditevent (id, occurred_at, actor_label, action, object_type, object_id, reason, "
            "before, after, prev_sha256, sha256) VALUES (1, %s, 'system:old', 'line.created', 'lines.line', '1', '', "
            "NULL, '{\"limit\": 3}', %s, %s)",
            [fields["occurred_at"], GENESIS_SHA256, digest],
        )
    with transaction.atomic():
        event = audit_record(actor=make_user("data"), action="test.done", object_type="x", object_id="2")
    assert (event.id, event.prev_sha256, event.scheme) == (2, digest, 2)
    check = audit_chain_verify()
    assert check.ok and check.checked == 2


@pytest.mark.parametrize("fields", [AWKWARD, {}, {"after": {"id": 7}, "zeta": 1}, {"action": "x", "id_note": "y"}])
def test_the_text_around_the_id_makes_the_canonical_text_for_any_id(fields) -> None:  # noqa: ANN001
    prefix, suffix = canonical_around_id(fields)
    for event_id in (1, 42, 10**12):
        assert f"{prefix}{event_id}{suffix}" == canonical_dumps({**fields, "id": event_id})
