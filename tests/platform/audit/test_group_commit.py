"""An audited change holds the chain lock for no client round trip and no disk write, yet is on disk when it returns.

Events recorded in the block that commits ride in the COMMIT's own message (lock, inserts, commit, WAL flush);
events recorded in a nested block are appended at once and hold the lock to the commit, which then does not wait
for the disk under it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, IntegrityError, connection, transaction
from psycopg import pq

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify, audit_record


def _lsn(query: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT {query} - '0/0'::pg_lsn")
        return int(cur.fetchone()[0])


def _chain_locks_held() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return int(cur.fetchone()[0])


def _needs_pg17() -> None:
    if connection.pg_version < 170000:
        pytest.skip("the WAL flush after the commit needs PostgreSQL 17+")


@pytest.mark.django_db(transaction=True)
def test_an_audited_transaction_is_on_disk_when_its_commit_returns() -> None:
    _needs_pg17()
    for i in range(20):
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SHOW synchronous_commit")
                assert cur.fetchone()[0] == "on"
            with transaction.atomic():  # a nested block: the event is appended at once
                audit_record(actor="system:test", action="test.done", object_type="x", object_id=str(i))
            with connection.cursor() as cur:
                cur.execute("SHOW synchronous_commit")  # the commit does not wait for the disk under the lock
                assert cur.fetchone()[0] == "off"
        written = _lsn("pg_current_wal_insert_lsn()")
        # the commit record lies before `written`; the flush after the commit took the WAL to disk through it
        assert _lsn("pg_current_wal_flush_lsn()") >= written, i


@pytest.mark.django_db(transaction=True)
def test_an_event_recorded_in_the_committing_block_takes_the_lock_only_in_the_commit_and_is_then_on_disk() -> None:
    _needs_pg17()
    for i in range(20):
        with transaction.atomic():
            event = audit_record(actor="system:test", action="test.done", object_type="x", object_id=str(i))
            assert event.id is None and _chain_locks_held() == 0  # nothing waits on this transaction's work
        written = _lsn("pg_current_wal_insert_lsn()")
        assert _lsn("pg_current_wal_flush_lsn()") >= written, i
        stored = AuditEvent.objects.get(pk=event.id)
        assert (stored.sha256, stored.prev_sha256, stored.canonical) == (
            event.sha256,
            event.prev_sha256,
            event.canonical,
        )
    assert audit_chain_verify().checked == 20


@pytest.mark.django_db(transaction=True)
def test_events_keep_the_order_they_were_recorded_in_across_nested_blocks() -> None:
    with transaction.atomic():
        first = audit_record(actor="system:test", action="test.first", object_type="x", object_id="1")
        with transaction.atomic():
            second = audit_record(actor="system:test", action="test.second", object_type="x", object_id="2")
            assert _chain_locks_held() == 1  # appended at once, the first with it
        third = audit_record(actor="system:test", action="test.third", object_type="x", object_id="3")
    assert [first.id, second.id, third.id] == [1, 2, 3]
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "test.first",
        "test.second",
        "test.third",
    ]
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_no_event_behind_for_the_next_commit() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(actor="system:test", action="test.undone", object_type="x", object_id="1")
        raise RuntimeError("the change failed")
    with transaction.atomic():
        audit_record(actor="system:test", action="test.done", object_type="x", object_id="2")
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.done"]


@pytest.mark.django_db(transaction=True)
def test_a_commit_that_fails_takes_the_change_and_its_events_back() -> None:
    users = get_user_model()
    with pytest.raises(IntegrityError), transaction.atomic():
        users.objects.create_user("kept-not", password="x" * 12)  # the business change
        ghost = users.objects.create_user("ghost", password="x" * 12)
        audit_record(actor=ghost, action="test.done", object_type="x", object_id="1")
        with connection.cursor() as cur:  # the event's actor is gone: the deferred foreign key fails at the COMMIT
            cur.execute("DELETE FROM auth_user WHERE id = %s", [ghost.pk])
    assert not users.objects.filter(username="kept-not").exists()
    assert AuditEvent.objects.count() == 0
    with transaction.atomic():  # the connection goes on, holding nothing back from the failed transaction
        audit_record(actor="system:test", action="test.done", object_type="x", object_id="2")
    assert list(AuditEvent.objects.values_list("id", "action")) == [(1, "test.done")]


@pytest.mark.django_db(transaction=True)
def test_an_audit_only_transaction_commits_and_a_failed_one_leaves_the_connection_usable() -> None:
    with transaction.atomic():
        event = audit_record(actor="system:test", action="test.alone", object_type="x", object_id="1")
        # nothing was sent yet: the BEGIN rides in the commit's message with the insert and the COMMIT
        assert connection.connection.info.transaction_status == pq.TransactionStatus.IDLE
    assert AuditEvent.objects.get(pk=event.id).action == "test.alone"
    # the event cannot be stored (object_id is 64 characters at most): the database refuses it inside the message
    with pytest.raises(DataError), transaction.atomic():
        audit_record(actor="system:test", action="test.too_long", object_type="x", object_id="9" * 65)
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.alone"]
    assert connection.get_autocommit()  # back to autocommit after the failed transaction, as Django expects
    with transaction.atomic():  # and the next transaction works as any other
        users = get_user_model()
        users.objects.create_user("after", password="x" * 12)
        audit_record(actor="system:test", action="test.after", object_type="x", object_id="2")
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["test.alone", "test.after"]
    assert audit_chain_verify().ok
