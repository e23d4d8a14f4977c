"""An audited change holds the chain lock for no client round trip and no disk write, yet is on disk when it returns.

Events recorded in the block that commits ride in the COMMIT's own message (lock, inserts, commit, WAL flush);
events recorded in a nested block are appended at once and hold the lock to the commit, which then does not wait
for the disk under it.
"""

from __future__ import annotations

import time
from contextlib import closing

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, IntegrityError, connection, transaction
from psycopg import pq

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify, audit_record
from twinops.config.database_roles import SUPERUSER
from twinops.config.embedded import data_home


def _lsn(query: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT {query} - '0/0'::pg_lsn")
        return int(cur.fetchone()[0])


def _xid() -> int:
    """This transaction's id (assigned now if it has none), as WAL records name it."""
    with connection.cursor() as cur:
        cur.execute("SELECT mod(pg_current_xact_id()::text::bigint, 4294967296)")
        return int(cur.fetchone()[0])


def _assert_on_disk(xid: int, before: int, i: int) -> None:
    """Every WAL record of transaction `xid` (written after `before`) is on disk, its commit record included.

    The insert position read after the commit lies past our commit record, but it may also count what other backends
    appended since and nobody flushed yet (the background writer's snapshot record, autovacuum): then the records
    are read back, once a later commit took them to disk, to find where ours ended.
    """
    written = _lsn("pg_current_wal_insert_lsn()")
    flushed = _lsn("pg_current_wal_flush_lsn()")
    if flushed >= written:
        return
    passfile = data_home() / "postgres-auth" / f"{SUPERUSER}.pgpass"
    if not passfile.exists():  # reading WAL records back needs the server's superuser
        pytest.skip("other backends wrote WAL after the commit; telling ours apart needs the embedded superuser")
    params = {**connection.get_connection_params(), "user": SUPERUSER, "passfile": str(passfile)}
    params.pop("password", None)
    with closing(connection.get_new_connection(params)) as su:
        su.autocommit = True
        su.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        deadline = time.monotonic() + 10
        while _lsn("pg_current_wal_flush_lsn()") < written and time.monotonic() < deadline:
            su.execute("SELECT pg_current_xact_id()")  # a transaction of its own, committed and flushed
        count, ours_end = su.execute(
            "SELECT count(*), max(end_lsn - '0/0'::pg_lsn) FROM pg_get_wal_records_info("
            "'0/0'::pg_lsn + %s, '0/0'::pg_lsn + %s) WHERE xid::text::bigint = %s",
            [before, written, xid],
        ).fetchone()
    assert count > 0, f"no WAL record of transaction {xid} between {before} and {written}"
    assert flushed >= int(ours_end), i


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
            xid, before = _xid(), _lsn("pg_current_wal_insert_lsn()")
        # the flush after the commit took the WAL to disk through the commit record
        _assert_on_disk(xid, before, i)


@pytest.mark.django_db(transaction=True)
def test_an_event_recorded_in_the_committing_block_takes_the_lock_only_in_the_commit_and_is_then_on_disk() -> None:
    _needs_pg17()
    for i in range(20):
        with transaction.atomic():
            xid, before = _xid(), _lsn("pg_current_wal_insert_lsn()")
            event = audit_record(actor="system:test", action="test.done", object_type="x", object_id=str(i))
            assert event.id is None and _chain_locks_held() == 0  # nothing waits on this transaction's work
        _assert_on_disk(xid, before, i)
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
