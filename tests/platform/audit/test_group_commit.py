"""An audited change commits without holding the chain lock through the disk write, yet is on disk when it returns."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from twinops.audit.services import audit_record


def _lsn(query: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT {query} - '0/0'::pg_lsn")
        return int(cur.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_an_audited_transaction_is_on_disk_when_its_commit_returns() -> None:
    if connection.pg_version < 170000:
        pytest.skip("the WAL flush after the commit needs PostgreSQL 17+")
    for i in range(20):
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SHOW synchronous_commit")
                assert cur.fetchone()[0] == "on"
            audit_record(actor="system:test", action="test.done", object_type="x", object_id=str(i))
            with connection.cursor() as cur:
                cur.execute("SHOW synchronous_commit")  # the commit does not wait for the disk under the lock
                assert cur.fetchone()[0] == "off"
        written = _lsn("pg_current_wal_insert_lsn()")
        # the commit record lies before `written`; the flush after the commit took the WAL to disk through it
        assert _lsn("pg_current_wal_flush_lsn()") >= written, i
