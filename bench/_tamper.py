"""Randomized tampering with the audit chain, in the database (as its superuser) and in export bundles.

Shared by tests/platform/auditing/test_tamper.py and bench/audit.py (underscored: not a benchmark of its own). Each `*_trial` applies one random tamper,
runs the verifier and returns (kind, expected first bad event, what the verifier said). The database trials run
inside a savepoint that is rolled back afterwards, so the chain is restored between trials.
"""

from __future__ import annotations

import copy
import io
import json
import random
import secrets
import zipfile
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection, transaction

from twinops.audit.canonical import canonical_dumps, event_sha256
from twinops.audit.services import audit_verify
from twinops.auditing import verify

DB_KINDS = ("edit", "delete", "delete_tail", "reorder", "insert", "insert_rehash", "rewrite")
BUNDLE_KINDS = ("edit", "delete", "delete_tail", "reorder", "insert", "rewrite", "replace_file")


@dataclass(frozen=True)
class Trial:
    """One tamper and what the verifier made of it."""

    where: str  # "db" or "bundle"
    kind: str
    expected_id: int | None  # the event the verifier must name (None: a file, not an event)
    detected: bool
    named_id: int | None
    problem: str

    @property
    def named_right(self) -> bool:
        """Return whether the verifier named the expected event (or, for a replaced file, that file)."""
        return self.named_id == self.expected_id


def _before(anchored: list[int], event_id: int, floor: int = 0) -> int:
    """Return the first event a rewrite from `event_id` is named at: just after the last anchor before it."""
    return max([a for a in anchored if floor <= a < event_id], default=floor - 1 if floor else 0) + 1


# --- the database ---------------------------------------------------------------------------------------------------


def _rows(cur: Any, from_id: int) -> list[tuple[int, str, str]]:
    cur.execute("SELECT id, canonical, sha256 FROM audit_auditevent WHERE id >= %s ORDER BY id", [from_id])
    return cur.fetchall()


def _rehash(cur: Any, from_id: int, prev: str, *, change: dict[str, Any] | None = None) -> None:
    """Recompute canonical text, links and hashes from `from_id` on (ids taken from the rows), as an attacker would."""
    for eid, text, _ in _rows(cur, from_id):
        doc = json.loads(text) | {"id": eid}
        if change and eid == from_id:
            doc |= change
        canonical = canonical_dumps(doc)
        sha = event_sha256(prev_sha256=prev, canonical=canonical)
        cur.execute(
            "UPDATE audit_auditevent SET canonical = %s, reason = %s, after = %s::jsonb, prev_sha256 = %s, "
            "sha256 = %s WHERE id = %s",
            [canonical, doc["reason"], json.dumps(doc["after"]), prev, sha, eid],
        )
        prev = sha


def _sha(cur: Any, event_id: int) -> str:
    cur.execute("SELECT sha256 FROM audit_auditevent WHERE id = %s", [event_id])
    row = cur.fetchone()
    return row[0] if row else "0" * 64


def _shift_up(cur: Any, from_id: int) -> None:
    """Move events from `from_id` on one id up (through negative ids, so no two rows ever share an id)."""
    cur.execute("UPDATE audit_auditevent SET id = -(id + 1) WHERE id >= %s", [from_id])
    cur.execute("UPDATE audit_auditevent SET id = -id WHERE id < 0")


def _forge(cur: Any, event_id: int, prev: str) -> None:
    """Insert a self-consistent forged event with this id linked to `prev` (columns equal to its hashed text)."""
    doc = {
        "id": event_id,
        "occurred_at": "2026-03-01T00:30:00+00:00",
        "actor": "mallory",
        "action": "proposal.approved",
        "object_type": "x",
        "object_id": "forged",
        "reason": "inserted",
        "before": None,
        "after": {"forged": True},
    }
    canonical = canonical_dumps(doc)
    cur.execute(
        "INSERT INTO audit_auditevent (id, occurred_at, actor_label, action, object_type, object_id, reason, before, "
        "after, prev_sha256, sha256, scheme, canonical) VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s::jsonb, %s, %s, "
        "2, %s)",
        [
            event_id,
            doc["occurred_at"],
            doc["actor"],
            doc["action"],
            doc["object_type"],
            doc["object_id"],
            doc["reason"],
            json.dumps(doc["after"]),
            prev,
            event_sha256(prev_sha256=prev, canonical=canonical),
            canonical,
        ],
    )


_EDITS = (
    ("reason", "reason = 'nothing to see'"),
    ("action", "action = 'forged.action'"),
    ("actor", "actor_label = 'mallory'"),
    ("object_id", "object_id = '999'"),
    ("after", 'after = \'{"i": -1, "x": 1}\'::jsonb'),
    ("canonical", "canonical = canonical || ' '"),
    ("occurred_at", "occurred_at = occurred_at + interval '1 second'"),
    ("prev_sha256", "prev_sha256 = md5(random()::text) || md5(random()::text)"),
    ("sha256", "sha256 = md5(random()::text) || md5(random()::text)"),
)


def db_tamper(cur: Any, rng: random.Random, kind: str, head: int, anchored: list[int]) -> int:
    """Tamper with the chain of events 1..head as the database superuser; return the event a verifier must name."""
    if kind == "edit":
        k = rng.randint(1, head)
        cur.execute(f"UPDATE audit_auditevent SET {rng.choice(_EDITS)[1]} WHERE id = %s", [k])
        return k
    if kind == "delete":
        k = rng.randint(1, head - 1)
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [k])
        return k
    if kind == "delete_tail":
        k = rng.randint(1, head)
        cur.execute("DELETE FROM audit_auditevent WHERE id >= %s", [k])
        return k
    if kind == "reorder":
        i, j = sorted(rng.sample(range(1, head + 1), 2))
        cur.execute("UPDATE audit_auditevent SET id = -1 WHERE id = %s", [i])
        cur.execute("UPDATE audit_auditevent SET id = %s WHERE id = %s", [i, j])
        cur.execute("UPDATE audit_auditevent SET id = %s WHERE id = -1", [j])
        return i
    if kind in ("insert", "insert_rehash"):
        k = rng.randint(2, head)
        prev = _sha(cur, k - 1)
        _shift_up(cur, k)
        _forge(cur, k, prev)
        if kind == "insert":  # the forged event links to its predecessor: the next one's link breaks, unless the
            return _before(anchored, k) if k in anchored else k + 1  # forged one sits where an anchor vouches
        _rehash(cur, k + 1, _sha(cur, k))
        return _before(anchored, k)
    if kind == "rewrite":
        k = rng.randint(1, head)
        _rehash(cur, k, _sha(cur, k - 1) if k > 1 else "0" * 64, change={"reason": f"rewritten {rng.random()}"})
        return _before(anchored, k)
    raise ValueError(kind)


def db_trial(rng: random.Random, *, head: int, anchored: list[int], kind: str | None = None) -> Trial:
    """Tamper inside a savepoint, verify the chain against its anchors, roll the tamper back."""
    kind = kind or rng.choice(DB_KINDS)
    sid = transaction.savepoint()
    try:
        with connection.cursor() as cur:
            cur.execute("SET LOCAL session_replication_role = replica")  # what a superuser does to pass the triggers
            expected = db_tamper(cur, rng, kind, head, anchored)
            cur.execute("SET LOCAL session_replication_role = origin")
        check = audit_verify()
    finally:
        transaction.savepoint_rollback(sid)
    return Trial("db", kind, expected, not check.ok, check.first_bad_id, check.problem)


# --- bundles --------------------------------------------------------------------------------------------------------


@dataclass
class Bundle:
    """An export bundle held in memory: its files, its events as parsed lines, its runs and anchored event ids."""

    files: dict[str, bytes]
    lines: list[dict[str, Any]]
    runs: list[tuple[int, int]]
    anchored: list[int]
    export_id: int

    @classmethod
    def read(cls, raw: bytes) -> Bundle:
        """Return the bundle of a zip file's bytes."""
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
        manifest = json.loads(files["manifest.json"])
        lines = [json.loads(t) for t in files["events.jsonl"].decode().splitlines()]
        anchored = sorted({json.loads(t)["event_id"] for t in files["anchors.jsonl"].decode().splitlines()})
        runs = [tuple(r) for r in manifest["segments"]]
        return cls(files, lines, runs, anchored, manifest["export_event_id"])

    def zip(self, files: dict[str, bytes] | None = None) -> bytes:
        """Return the bundle (or other files) as zip bytes."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in (files or self.files).items():
                zf.writestr(name, data)
        return out.getvalue()


def _rehash_lines(lines: list[dict[str, Any]], start: int, end: int) -> None:
    """Recompute links and hashes of lines[start:end] (one run), as an attacker would."""
    prev = lines[start]["prev_sha256"]
    for line in lines[start:end]:
        line["prev_sha256"] = prev
        line["sha256"] = prev = verify.event_sha256(prev_sha256=prev, event=line["event"], scheme=line["scheme"])


def _run_end(b: Bundle, lines: list[dict[str, Any]], p: int) -> int:
    """Return the index just past the run that line p belongs to."""
    eid = lines[p]["event"]["id"]
    last = next(hi for lo, hi in b.runs if lo <= eid <= hi)
    return next(i for i, line in enumerate(lines) if line["event"]["id"] == last) + 1


def _edit(rng: random.Random, line: dict[str, Any]) -> None:
    field = rng.choice(("reason", "actor", "after", "occurred_at", "action", "sha256", "prev_sha256"))
    if field in ("sha256", "prev_sha256"):
        line[field] = secrets.token_hex(32)
    elif field == "after":
        line["event"]["after"] = {"i": -1, "x": rng.random()}
    elif field == "occurred_at":
        line["event"]["occurred_at"] = "2031-01-01T00:00:00+00:00"
    else:
        line["event"][field] = f"forged {rng.random()}"


def bundle_tamper(rng: random.Random, b: Bundle, kind: str) -> tuple[dict[str, bytes], int | None, str]:
    """Return tampered files, the event a verifier must name (None: a whole file) and the file it must name."""
    lines = copy.deepcopy(b.lines)
    ids = [line["event"]["id"] for line in lines]
    files = dict(b.files)
    expected: int | None
    named_file = ""
    if kind == "edit":
        p = rng.randrange(len(lines))
        _edit(rng, lines[p])
        expected = ids[p]
    elif kind == "delete":
        p = rng.randrange(len(lines) - 1)
        del lines[p]
        expected = ids[p]
    elif kind == "delete_tail":
        p = rng.randrange(1, len(lines))
        del lines[p:]
        expected = ids[p]
    elif kind == "reorder":
        i, j = sorted(rng.sample(range(len(lines)), 2))
        lines[i], lines[j] = lines[j], lines[i]
        expected = ids[i]
    elif kind == "insert":
        p = rng.randrange(len(lines))
        forged = copy.deepcopy(lines[p])
        forged["event"]["reason"] = "inserted"
        if p > 0 and ids[p - 1] == ids[p] - 1:
            forged["prev_sha256"] = lines[p - 1]["sha256"]
        forged["sha256"] = verify.event_sha256(prev_sha256=forged["prev_sha256"], event=forged["event"], scheme=2)
        lines.insert(p, forged)
        run_start = next(lo for lo, hi in b.runs if lo <= ids[p] <= hi)
        expected = _before(b.anchored, ids[p], floor=run_start) if ids[p] in b.anchored else ids[p]
    elif kind == "rewrite":
        p = rng.randrange(len(lines))
        lines[p]["event"]["reason"] = f"rewritten {rng.random()}"
        _rehash_lines(lines, p, _run_end(b, lines, p))
        run_start = next(lo for lo, hi in b.runs if lo <= ids[p] <= hi)
        expected = _before(b.anchored, ids[p], floor=run_start)
    elif kind == "replace_file":
        named_file = rng.choice(("decisions.csv", "report.html", "verify.py", "anchors.jsonl", "manifest.json"))
        expected = None
        if named_file == "anchors.jsonl":  # re-signed with a key that is not the anchors' key
            files[named_file] = _resigned(files[named_file])
        elif named_file == "manifest.json":
            manifest = json.loads(files[named_file])
            field = rng.choice(("first_id", "last_id", "from", "line", "files"))
            manifest[field] = (
                {"decisions.csv": "0" * 64}
                if field == "files"
                else (manifest[field] or 0) + 1
                if field.endswith("_id")
                else "2020-01-01T00:00:00+00:00"
            )
            files[named_file] = json.dumps(manifest).encode()
            expected = b.export_id
        else:
            files[named_file] = b"=cmd|' /C calc'!A0\n" if named_file == "decisions.csv" else b"forged"
    else:
        raise ValueError(kind)
    files["events.jsonl"] = "".join(canonical_dumps(line) + "\n" for line in lines).encode("utf-8")
    return files, expected, named_file


def _resigned(anchors: bytes) -> bytes:
    """Return the anchors signed again with a fresh key (what an attacker without the real key can do)."""
    key = Ed25519PrivateKey.generate()
    out = []
    for text in anchors.decode().splitlines():
        a = json.loads(text)
        message = verify.ANCHOR_PREFIX + canonical_dumps({k: a[k] for k in verify.ANCHOR_SIGNED}).encode()
        a["signature"] = key.sign(message).hex()
        out.append(canonical_dumps(a))
    return ("\n".join(out) + "\n").encode()


def bundle_trial(rng: random.Random, b: Bundle, *, public_key: str, kind: str | None = None) -> Trial:
    """Tamper with a copy of the bundle and verify it in-process against the anchors' real public key."""
    kind = kind or rng.choice(BUNDLE_KINDS)
    files, expected, named_file = bundle_tamper(rng, b, kind)
    result = verify.verify_bundle(io.BytesIO(b.zip(files)), public_key=public_key)
    named = result.first_bad_id
    if named_file and named_file != "manifest.json":  # a whole file: it must be named in the problem
        named = None if named_file in result.problem else -1
    return Trial("bundle", kind, expected, not result.ok, named, result.problem)
