"""The audit log is append-only in the database and its hash chain exposes tampering."""

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify, audit_record


def _three_events(actor: object) -> list[AuditEvent]:
    with transaction.atomic():
        return [
            audit_record(
                actor=actor,
                action="line.created",
                object_type="lines.line",
                object_id=str(i),
                reason="test",
                after={"limit": i},
            )
            for i in range(3)
        ]


@pytest.mark.django_db
def test_it_chains_each_event_to_the_previous_one(make_user) -> None:
    events = _three_events(make_user("data"))
    assert [e.id - events[0].id for e in events] == [0, 1, 2]
    assert events[1].prev_sha256 == events[0].sha256
    assert events[2].prev_sha256 == events[1].sha256
    assert audit_chain_verify().ok


@pytest.mark.django_db
def test_the_database_refuses_to_update_an_audit_event(make_user, database_superuser) -> None:
    event = _three_events(make_user("data"))[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE audit_auditevent SET after = '{}' WHERE id = %s", [event.pk])
    event.refresh_from_db()
    assert event.reason == "test"


@pytest.mark.django_db
def test_the_database_refuses_to_delete_an_audit_event(make_user, database_superuser) -> None:
    event = _three_events(make_user("data"))[1]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_verification_finds_an_event_changed_behind_the_triggers_back(make_user, database_superuser) -> None:
    events = _three_events(make_user("data"))
    with connection.cursor() as cur:  # a superuser bypassing the trigger, as an attacker with DBA rights would
        cur.execute("SET session_replication_role = replica")  # superuser-only: user triggers do not fire
        cur.execute("UPDATE audit_auditevent SET after = '{\"limit\": 99}' WHERE id = %s", [events[1].pk])
        cur.execute("SET session_replication_role = origin")
    check = audit_chain_verify()
    assert not check.ok
    assert check.first_bad_id == events[1].pk
    assert "content" in check.problem


@pytest.mark.django_db(transaction=True)
def test_an_audit_event_outside_a_transaction_is_refused(make_user) -> None:
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        audit_record(actor=make_user("data"), action="line.created", object_type="x", object_id="1")
