"""Signed chain heads outside the database expose what a database superuser can do that the hashes alone cannot."""

from __future__ import annotations

import json
import os
import stat

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from twinops.audit.anchors import AnchorKeyError, public_key_hex, signing_key
from twinops.audit.canonical import canonical_dumps, event_sha256
from twinops.audit.services import audit_anchor, audit_chain_verify, audit_record, audit_verify

pytestmark = pytest.mark.django_db


def _record(n: int) -> None:
    with transaction.atomic():
        for i in range(n):
            audit_record(actor="system:test", action="test.done", object_type="x", object_id=str(i), after={"i": i})


@pytest.fixture
def anchored(anchor_files) -> None:  # noqa: ANN001
    """Six events, anchored after the third and after the sixth."""
    _record(3)
    audit_anchor()
    _record(3)
    audit_anchor()


def _superuser(sql: str, params: list[object] | None = None) -> None:
    """Run SQL as the database superuser with user triggers off, as an attacker with full database access would."""
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        try:
            cur.execute(sql, params or [])
        finally:
            cur.execute("SET session_replication_role = origin")


def _rewrite_from(event_id: int, after: dict[str, object]) -> None:
    """Change one event's content and recompute every hash from it on, so the chain checks out by itself."""
    with connection.cursor() as cur:
        cur.execute("SELECT id, canonical, prev_sha256 FROM audit_auditevent WHERE id >= %s ORDER BY id", [event_id])
        rows = cur.fetchall()
    prev = rows[0][2]
    for eid, text, _ in rows:
        doc = json.loads(text)
        if eid == event_id:
            doc["after"] = after
        canonical = canonical_dumps(doc)
        sha = event_sha256(prev_sha256=prev, canonical=canonical)
        _superuser(
            "UPDATE audit_auditevent SET canonical = %s, after = %s::jsonb, prev_sha256 = %s, sha256 = %s WHERE id = %s",
            [canonical, json.dumps(doc["after"]), prev, sha, eid],
        )
        prev = sha


def test_an_untouched_chain_verifies_through_its_newest_anchor(anchored) -> None:  # noqa: ANN001
    check = audit_verify()
    assert (check.ok, check.checked, check.anchored_through) == (True, 6, 6)
    call_command("audit", "verify")


def test_a_rewritten_chain_with_recomputed_hashes_is_detected(anchored, capsys, database_superuser) -> None:  # noqa: ANN001
    _rewrite_from(5, {"i": 99})
    assert audit_chain_verify().ok  # the hashes alone cannot tell
    check = audit_verify()
    assert not check.ok and check.first_bad_id == 4  # the first event no matching anchor vouches for
    assert "events 4 to 6 were rewritten" in check.problem
    with pytest.raises(CommandError, match="event 4: events 4 to 6 were rewritten"):
        call_command("audit", "verify")


def test_a_deleted_tail_is_detected(anchored, database_superuser) -> None:  # noqa: ANN001
    _superuser("DELETE FROM audit_auditevent WHERE id >= 5")
    assert audit_chain_verify().ok
    check = audit_verify()
    assert (check.ok, check.first_bad_id) == (False, 5)
    assert "tail was deleted" in check.problem


def test_a_deleted_tail_replaced_by_new_events_is_detected(anchored, database_superuser) -> None:  # noqa: ANN001
    _superuser("DELETE FROM audit_auditevent WHERE id >= 5")
    _record(2)  # ids 5 and 6 again, with other hashes
    check = audit_verify()
    assert (check.ok, check.first_bad_id) == (False, 4)


def test_an_edited_field_is_detected_and_named(anchored, database_superuser) -> None:  # noqa: ANN001
    _superuser("UPDATE audit_auditevent SET reason = 'nothing to see' WHERE id = 2")
    check = audit_verify()
    assert (check.ok, check.first_bad_id) == (False, 2)
    assert "reason" in check.problem


def test_a_verification_range_is_covered_by_the_next_anchor(anchored, database_superuser) -> None:  # noqa: ANN001
    _rewrite_from(5, {"i": 99})
    assert not audit_verify(from_id=4, to_id=5).ok  # the walk goes on to the anchor at 6
    assert audit_verify(from_id=1, to_id=3).ok


def test_anchoring_refuses_to_sign_a_tampered_chain(anchored, anchor_files, database_superuser) -> None:  # noqa: ANN001
    _, log = anchor_files
    _record(1)
    _superuser("UPDATE audit_auditevent SET reason = 'changed' WHERE id = 7")
    lines = log.read_text()
    with pytest.raises(ValueError, match="not signing the audit chain head: event 7"):
        audit_anchor()
    assert log.read_text() == lines


def test_an_anchor_forged_without_the_key_is_reported(anchored, anchor_files) -> None:  # noqa: ANN001
    _, log = anchor_files
    forged = json.loads(log.read_text().splitlines()[-1]) | {"event_id": 2, "signature": "00" * 64}
    with open(log, "a") as fh:
        fh.write(json.dumps(forged) + "\n")
    check = audit_verify()
    assert not check.ok and "anchor log line 3" in check.problem


def test_nothing_new_is_not_signed_twice(anchored, anchor_files) -> None:  # noqa: ANN001
    _, log = anchor_files
    assert audit_anchor() is None
    assert len(log.read_text().splitlines()) == 2


def test_the_signing_key_is_created_once_private_to_its_owner(anchor_files, capsys) -> None:  # noqa: ANN001
    key_path, _ = anchor_files
    call_command("audit", "key")
    printed = capsys.readouterr().out.strip()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert printed == public_key_hex(signing_key(key_path, create=True))  # the same key, not a new one
    os.chmod(key_path, 0o644)
    with pytest.raises(AnchorKeyError, match="readable by others"):
        signing_key(key_path, create=False)


def test_verify_with_another_public_key_rejects_the_anchors(anchored) -> None:  # noqa: ANN001
    with pytest.raises(CommandError, match="anchor log line 1"):
        call_command("audit", "verify", "--public-key", "11" * 32)
