"""1,200 random tampers with the chain (as the database superuser) and with export bundles: every one is detected and
the first bad event named; the untouched chain and bundles verify clean (bench/_tamper.py holds the tampers)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from bench._tamper import BUNDLE_KINDS, DB_KINDS, Bundle, bundle_tamper, bundle_trial, db_tamper, db_trial
from twinops.audit.anchors import public_key_hex, signing_key
from twinops.audit.services import audit_anchor, audit_record, audit_verify
from twinops.auditing import verify
from twinops.auditing.services import audit_export

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DB_TRIALS, BUNDLE_TRIALS = 600, 600
SUBPROCESS_EVERY = 30  # every 30th bundle trial also runs verify.py as its own process; the rest import it


def _chain(n: int = 60, anchor_every: int = 10) -> None:
    """n events, one a minute from T0 + 1 min (event i at T0 + i min), anchored after every `anchor_every`."""
    for start in range(1, n + 1, anchor_every):
        with transaction.atomic():
            for i in range(start, start + anchor_every):
                audit_record(
                    actor="system:test",
                    action="test.done",
                    object_type="x",
                    object_id=str(i),
                    reason="because",
                    after={"i": i, "neg_zero": -0.0, "big": 1e20, "text": "Grüße ✓ " * 3},
                    at=T0 + timedelta(minutes=i),
                )
        audit_anchor()


@pytest.fixture
def world(anchor_files, tmp_path: Path, database_superuser) -> dict[str, object]:  # noqa: ANN001
    """The chain, a two-run bundle of events 15..34 and a whole-chain bundle, and the anchors' public key.

    The test's connection is the server's superuser (`database_superuser`): the attacker these tests play."""
    _chain()
    part, whole = tmp_path / "part.zip", tmp_path / "whole.zip"
    audit_export(actor="system:test", start=T0 + timedelta(minutes=15), end=T0 + timedelta(minutes=35), out=part)
    audit_export(actor="system:test", start=None, end=None, out=whole)
    key = public_key_hex(signing_key(anchor_files[0], create=False))
    anchored = sorted({json.loads(t)["event_id"] for t in anchor_files[1].read_text().splitlines()})
    return {"key": key, "part": part, "whole": whole, "anchored": anchored, "head": anchored[-1]}


def test_the_untouched_chain_and_bundles_verify_clean(world) -> None:  # noqa: ANN001
    assert audit_verify().ok
    call_command("audit", "verify")
    for path in (world["part"], world["whole"]):
        assert verify.verify_bundle(path).ok
        assert verify.verify_bundle(path, public_key=world["key"]).ok
    assert Bundle.read(world["part"].read_bytes()).runs == [(15, 40), (61, 61)]


def test_random_tampering_with_the_database_is_always_detected_and_named(world) -> None:  # noqa: ANN001
    rng = random.Random(20260301)
    kinds = [DB_KINDS[i % len(DB_KINDS)] for i in range(DB_TRIALS)]
    trials = [db_trial(rng, head=world["head"], anchored=world["anchored"], kind=k) for k in kinds]
    missed = [t for t in trials if not t.detected]
    misnamed = [t for t in trials if t.detected and not t.named_right]
    assert not missed, missed[:3]
    assert not misnamed, misnamed[:3]
    assert Counter(t.kind for t in trials) == Counter(kinds)
    assert audit_verify().ok  # every tamper was rolled back


def test_the_audit_command_names_the_first_bad_event_of_tampered_databases(world) -> None:  # noqa: ANN001
    rng = random.Random(7)
    for kind in DB_KINDS:
        sid = transaction.savepoint()
        try:
            with connection.cursor() as cur:
                cur.execute("SET LOCAL session_replication_role = replica")
                expected = db_tamper(cur, rng, kind, world["head"], world["anchored"])
                cur.execute("SET LOCAL session_replication_role = origin")
            with pytest.raises(CommandError, match=f"NOT verified: event {expected}:"):
                call_command("audit", "verify")
        finally:
            transaction.savepoint_rollback(sid)


def test_random_tampering_with_bundles_is_always_detected_and_named(world, tmp_path: Path) -> None:  # noqa: ANN001
    rng = random.Random(99)
    bundles = [Bundle.read(world["part"].read_bytes()), Bundle.read(world["whole"].read_bytes())]
    trials, by_process = [], 0
    for i in range(BUNDLE_TRIALS):
        b, kind = bundles[i % 2], BUNDLE_KINDS[(i // 2) % len(BUNDLE_KINDS)]
        if i % SUBPROCESS_EVERY:
            trials.append(bundle_trial(rng, b, public_key=world["key"], kind=kind))
            continue
        files, expected, named_file = bundle_tamper(rng, b, kind)  # this one through `python verify.py` itself
        path = tmp_path / f"t{i}.zip"
        path.write_bytes(b.zip(files))
        verifier = tmp_path / "verify.py"
        verifier.write_bytes(b.files["verify.py"])
        run = subprocess.run(
            [sys.executable, "-I", str(verifier), str(path), "--public-key", world["key"], "--json"],
            capture_output=True,
            text=True,
        )
        out = json.loads(run.stdout)
        assert run.returncode == 1 and not out["ok"], (kind, out)
        if named_file and named_file != "manifest.json":
            assert named_file in out["problem"], (kind, out)
        else:
            assert out["first_bad_id"] == expected, (kind, expected, out)
        by_process += 1
    missed = [t for t in trials if not t.detected]
    misnamed = [t for t in trials if t.detected and not t.named_right]
    assert not missed, missed[:3]
    assert not misnamed, misnamed[:3]
    assert by_process == BUNDLE_TRIALS // SUBPROCESS_EVERY and len(trials) + by_process == BUNDLE_TRIALS


def test_a_bundle_re_signed_with_another_key_passes_only_under_that_key(world) -> None:  # noqa: ANN001
    """The manifest's key is the attacker's to change: the auditor compares it with `twinops audit key`."""
    b = Bundle.read(world["part"].read_bytes())
    files = dict(b.files)
    manifest = json.loads(files["manifest.json"])
    manifest["public_key"] = "11" * 32
    files["manifest.json"] = json.dumps(manifest).encode()
    assert not verify.verify_bundle(io.BytesIO(b.zip(files))).ok  # the real anchors fail under the printed key
    assert verify.verify_bundle(io.BytesIO(b.zip(files)), public_key=world["key"]).ok  # and the real key still works


def test_a_tail_cut_back_exactly_onto_an_anchored_event_is_detected(world) -> None:  # noqa: ANN001
    """The walk through the head goes on to the newest anchor, not only to the first one at or after the head."""
    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute("DELETE FROM audit_auditevent WHERE id > 40")  # event 40 is anchored, and so were 41..62
        cur.execute("SET LOCAL session_replication_role = origin")
    check = audit_verify()
    assert (check.ok, check.first_bad_id) == (False, 41)
    assert "tail was deleted" in check.problem
