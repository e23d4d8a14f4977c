"""Verification checks events in bulk in the database, yet finds and names every edit the event-by-event check does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from twinops.audit import selectors
from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify, audit_record

# A column edited behind the trigger's back, without touching the hashed text: (set clause, column named).
SUBTLE_EDITS = [
    ("object_type", "object_type = 'lines.spec'", "object_type"),
    ("line", "line_key = 'preheat'", "line"),
    ("before", "before = '{\"limit\": 0}'::jsonb", "before"),
    ("number to bool", 'after = \'{"limit": true, "z": -0.0, "big": 1e20, "text": "ü"}\'::jsonb', "after"),
    ("number to text", 'after = \'{"limit": "1", "z": -0.0, "big": 1e20, "text": "ü"}\'::jsonb', "after"),
    ("a key more", 'after = \'{"limit": 1, "z": 0, "big": 1e20, "text": "ü", "x": null}\'::jsonb', "after"),
    ("occurred_at by a microsecond", "occurred_at = occurred_at + interval '1 microsecond'", "occurred_at"),
    ("object_id", "object_id = 'x1'", "object_id"),
]


def _events(n: int) -> list[int]:
    with transaction.atomic():
        return [
            audit_record(
                actor="system:test",
                action="line.created",
                object_type="lines.line",
                object_id=str(i),
                after={"limit": i, "z": -0.0, "big": 1e20, "text": "ü"},
            ).id
            for i in range(n)
        ]


def _tamper(sql: str, *params: object) -> None:
    with connection.cursor() as cur:  # as the superuser, with the triggers off
        cur.execute("SET session_replication_role = replica")
        cur.execute(sql, list(params))
        cur.execute("SET session_replication_role = origin")


@pytest.mark.django_db
@pytest.mark.parametrize(("edit", "field"), [(e[1], e[2]) for e in SUBTLE_EDITS], ids=[e[0] for e in SUBTLE_EDITS])
def test_a_column_edited_alone_is_named_with_its_column(database_superuser, edit: str, field: str) -> None:  # noqa: ANN001
    ids = _events(5)
    _tamper(f"UPDATE audit_auditevent SET {edit} WHERE id = %s", ids[1])
    check = audit_chain_verify()
    assert not check.ok
    assert check.first_bad_id == ids[1]
    assert f"the stored {field} differs" in check.problem


@pytest.mark.django_db
def test_a_canonical_text_that_is_not_json_is_named(database_superuser) -> None:  # noqa: ANN001
    ids = _events(4)
    _tamper("UPDATE audit_auditevent SET canonical = '{not json' WHERE id = %s", ids[2])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_id, check.problem) == (False, ids[2], "content does not match its hash")


@pytest.mark.django_db
def test_an_edit_past_the_first_batch_is_named(database_superuser, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(selectors, "_CHECK_BATCH", 4)
    ids = _events(11)
    assert audit_chain_verify().checked == 11
    _tamper("UPDATE audit_auditevent SET reason = 'edited' WHERE id = %s", ids[9])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_id, check.checked) == (False, ids[9], 9)
    assert "the stored reason differs" in check.problem


@pytest.mark.django_db
def test_a_canonical_text_that_is_not_json_in_a_later_batch_is_named_and_the_transaction_goes_on(
    database_superuser,  # noqa: ANN001
    monkeypatch,  # noqa: ANN001
) -> None:
    monkeypatch.setattr(selectors, "_CHECK_BATCH", 4)
    ids = _events(11)
    _tamper("UPDATE audit_auditevent SET canonical = '{not json' WHERE id = %s", ids[9])
    with transaction.atomic():
        check = audit_chain_verify()
        assert AuditEvent.objects.count() == 11  # the failed check in the database did not abort the transaction
    assert (check.ok, check.first_bad_id, check.problem) == (False, ids[9], "content does not match its hash")
    assert check.checked == 9


@pytest.mark.django_db
def test_a_deleted_event_in_a_later_batch_is_named_missing(database_superuser, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(selectors, "_CHECK_BATCH", 4)
    ids = _events(11)
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", ids[5])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_id, check.problem) == (False, ids[5], f"event {ids[5]} is missing")


@pytest.mark.django_db
def test_untouched_events_with_awkward_values_pass_the_bulk_check_itself() -> None:
    ids = _events(3)  # -0.0, 1e20 and non-ASCII text, which jsonb stores differently from the hashed text
    with transaction.atomic():
        audit_record(actor="system:test", action="x.done", object_type="x", object_id="1", line="reactor",
                     at=datetime(2026, 3, 1, 0, 0, 0, 123, tzinfo=UTC))  # fmt: skip
    rows = selectors._bulk_checked(after=ids[0] - 1, to_id=ids[0] + 3)
    assert rows is not None and [r[0] for r in rows] == [*ids, ids[0] + 3]
    assert all(r[5] for r in rows)  # the column check passed in the database: no fallback to Python needed


@pytest.mark.django_db(
    transaction=True
)  # outside a transaction: later batches are checked meanwhile on other connections
def test_read_ahead_batches_verify_a_clean_chain_and_name_an_edit_and_a_gap(database_superuser, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(selectors, "_CHECK_BATCH", 4)
    monkeypatch.setenv("TWINOPS_AUDIT_VERIFY_READ_AHEAD", "2")
    apart: list[int] = []
    checked_apart = selectors._bulk_checked_apart
    monkeypatch.setattr(
        selectors, "_bulk_checked_apart", lambda after, to_id: apart.append(after) or checked_apart(after, to_id)
    )
    _events(23)  # committed here: their ids come with the commit
    ids = list(AuditEvent.objects.order_by("id").values_list("id", flat=True))
    assert audit_chain_verify().checked == 23
    assert len(apart) >= 6  # every batch was read ahead, on connections of their own
    _tamper("UPDATE audit_auditevent SET reason = 'edited' WHERE id = %s", ids[14])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_id, check.checked) == (False, ids[14], 14)
    assert "the stored reason differs" in check.problem
    _tamper("UPDATE audit_auditevent SET reason = '' WHERE id = %s", ids[14])
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", ids[6])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_id, check.problem) == (False, ids[6], f"event {ids[6]} is missing")
