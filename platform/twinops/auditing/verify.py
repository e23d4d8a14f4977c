#!/usr/bin/env python3
"""Verify a TwinOps audit export bundle without trusting TwinOps: `python verify.py BUNDLE [--public-key HEX]`.

BUNDLE is the export's zip file or the folder it was extracted to. Needs only Python 3.10+ and `cryptography`
(`pip install cryptography`). Exit status 0: every check passed; 1: the bundle fails a check (the first bad event
is named); 2: the bundle cannot be read.

What is checked (docs/audit.md in the TwinOps repository describes the format):
1. every anchor in anchors.jsonl is signed (Ed25519) by the public key: the one in manifest.json, or --public-key
   (compare it with `twinops audit key`, or better, with a copy recorded where the database's owners cannot reach);
2. every event in events.jsonl hashes to its sha256: sha256(prev_sha256 + canonical JSON of the event), canonical
   meaning sorted keys, no whitespace, UTF-8, floats as Python's shortest repr; each links to the one before;
3. every signed anchor's event is in the bundle with the signed hash, and each run of events ends on one;
4. the events cover the exported range without a gap: from its first event to the anchored head after it, plus the
   export's own event (`audit.exported`) through the anchor signed at export time;
5. manifest.json, decisions.csv, report.html and verify.py are the ones that export event recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMAT = "twinops-audit-export/1"
ANCHOR_PREFIX = b"twinops audit anchor v1\n"
ANCHOR_SIGNED = ("event_id", "sha256", "occurred_at", "anchored_at")
MANIFEST_CHECKED = ("format", "from", "to", "line", "first_id", "last_id", "anchored_through", "files")


class BundleError(Exception):
    """The bundle cannot be read at all (not a zip or folder, a file missing, not JSON)."""


@dataclass
class Result:
    """What verification found: ok, or the first bad event (None when the fault is not one event's) and why."""

    ok: bool
    problem: str = ""
    first_bad_id: int | None = None
    checked: int = 0
    anchored_through: int | None = None
    anchored_at: str = ""
    public_key: str = ""
    notes: list[str] = field(default_factory=list)


def canonical_dumps(value: Any) -> str:
    """Return canonical JSON: sorted keys, no whitespace, non-ASCII kept, floats as shortest repr, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_sha256(*, prev_sha256: str, event: dict[str, Any], scheme: int) -> str:
    """Return an event's SHA-256 (hex): of previous hash + its canonical JSON (scheme 1: the same, NaN allowed)."""
    if scheme == 1:
        text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = canonical_dumps(event)
    return hashlib.sha256((prev_sha256 + text).encode("utf-8")).hexdigest()


class _Bundle:
    """Read files from the zip (a path or an open binary file) or the folder."""

    def __init__(self, path: Path | IO[bytes]) -> None:
        self.path = path
        if not isinstance(path, Path):
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            self.names = {n for n in self._zip.namelist() if not n.endswith("/")}
        elif path.is_dir():
            self.names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
            self._zip = None
        elif zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            self.names = {n for n in self._zip.namelist() if not n.endswith("/")}
        else:
            raise BundleError(f"{path} is neither a zip file nor a folder")

    def read(self, name: str) -> bytes | None:
        if name not in self.names:
            return None
        if self._zip is not None:
            return self._zip.read(name)
        assert isinstance(self.path, Path)
        return (self.path / name).read_bytes()


def _public_key(text: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except ValueError:
        raise BundleError(f"{text!r} is not an Ed25519 public key (64 hex digits)") from None


def _signature_ok(key: Any, fields: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        message = ANCHOR_PREFIX + canonical_dumps({k: fields[k] for k in ANCHOR_SIGNED}).encode("utf-8")
        key.verify(bytes.fromhex(str(fields["signature"])), message)
        return True
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False


def _json_lines(bundle: _Bundle, name: str) -> list[Any]:
    raw = bundle.read(name)
    if raw is None:
        raise BundleError(f"{name} is missing from the bundle")
    out = []
    for number, text in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if text.strip():
            try:
                out.append(json.loads(text))
            except ValueError:
                raise BundleError(f"{name} line {number} is not JSON") from None
    return out


def _first_misplaced(lines: list[Any]) -> tuple[int, int] | None:
    """Return (index, id that belongs there) of the first line whose id is not in ascending order, else None."""
    try:
        ids = [int(line["event"]["id"]) for line in lines]
    except (KeyError, TypeError, ValueError):
        return None  # the walk names the malformed line
    return next(((i, want) for i, (got, want) in enumerate(zip(ids, sorted(ids), strict=True)) if got != want), None)


def verify_bundle(path: str | Path | IO[bytes], *, public_key: str | None = None) -> Result:
    """Check a bundle (zip or folder) and return the outcome; raise BundleError when it cannot be read."""
    bundle = _Bundle(Path(path) if isinstance(path, str | Path) else path)
    raw_manifest = bundle.read("manifest.json")
    if raw_manifest is None:
        raise BundleError("manifest.json is missing from the bundle")
    try:
        manifest = json.loads(raw_manifest)
    except ValueError:
        raise BundleError("manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"manifest.json does not describe a {FORMAT} bundle")
    key_hex = public_key or str(manifest.get("public_key", ""))
    key = _public_key(key_hex)
    result = Result(ok=False, public_key=key_hex.strip().lower())

    def fail(event_id: int | None, problem: str) -> Result:
        result.first_bad_id, result.problem = event_id, problem
        return result

    # 1. anchors: each signed by the key
    anchors: dict[int, list[dict[str, Any]]] = {}
    for number, a in enumerate(_json_lines(bundle, "anchors.jsonl"), start=1):
        if not isinstance(a, dict) or not _signature_ok(key, a):
            return fail(None, f"anchors.jsonl line {number} has no valid signature under key {result.public_key}")
        anchors.setdefault(int(a["event_id"]), []).append(a)

    # 2./3. events: hashes, links, runs that each end on an anchored event
    runs: list[list[int]] = []  # [first id, last id] of each run of consecutive events
    present: dict[int, dict[str, Any]] = {}
    prev_id, prev_sha, trusted, scheme2 = None, "", 0, False
    export_id = manifest.get("export_event_id")
    lines = _json_lines(bundle, "events.jsonl")
    misplaced = _first_misplaced(lines)  # (line index, the id that belongs there) of a reordering, if any
    for number, line in enumerate(lines, start=1):
        try:
            event, sha, prev, scheme = line["event"], str(line["sha256"]), str(line["prev_sha256"]), int(line["scheme"])
            eid = int(event["id"])
        except (KeyError, TypeError, ValueError):
            return fail(None if prev_id is None else prev_id + 1, f"events.jsonl line {number} is not an event")
        if misplaced is not None and misplaced[0] == number - 1:
            return fail(misplaced[1], f"event {misplaced[1]} is out of order (event {eid} stands in its place)")
        if prev_id is not None and eid <= prev_id:
            if len(runs) > 1 and isinstance(export_id, int) and eid < export_id:  # it belonged before the jump
                missing = runs[0][1] + 1
                return fail(missing, f"event {missing} is missing (event {eid} comes after the export's event)")
            return fail(eid, f"event {eid} is out of order or repeated (it follows event {prev_id})")
        if prev_id is None or eid != prev_id + 1:
            # the one jump allowed: from an anchored event to the export's own event (the range ends before it)
            if prev_id is not None and not (eid == export_id and prev_id in anchors and len(runs) == 1):
                return fail(prev_id + 1, f"event {prev_id + 1} is missing (event {eid} follows event {prev_id})")
            runs.append([eid, eid])
            trusted = eid - 1
        elif prev != prev_sha:
            return fail(eid, "previous-hash link does not match")
        if scheme not in (1, 2) or (scheme == 1 and scheme2):
            return fail(eid, f"hash scheme {scheme} is not allowed here (schemes never go back)")
        scheme2 = scheme2 or scheme == 2
        try:
            computed = event_sha256(prev_sha256=prev, event=event, scheme=scheme)
        except ValueError:
            computed = ""
        if computed != sha:
            return fail(eid, "content does not match its hash")
        for a in anchors.get(eid, []):
            if a["sha256"] != sha:
                return fail(
                    trusted + 1,
                    f"events {trusted + 1} to {eid} were rewritten: event {eid}'s hash differs from the one signed "
                    f"at {a['anchored_at']}",
                )
            trusted, result.anchored_through, result.anchored_at = eid, eid, str(a["anchored_at"])
        runs[-1][1], prev_id, prev_sha = eid, eid, sha
        present[eid] = event
        result.checked += 1
    for eid in sorted(anchors):
        if eid not in present:
            start = max((r for r in runs if r[0] <= eid), default=None, key=lambda r: r[0])
            missing = start[1] + 1 if start else eid
            if isinstance(export_id, int) and eid >= export_id and export_id not in present:
                missing = export_id  # the export's own run is gone, not the range's continuation
            a = anchors[eid][0]
            return fail(
                missing,
                f"event {missing} is missing: the events stop at {missing - 1} but event {eid} was signed at "
                f"{a['anchored_at']} (the tail was deleted)",
            )
    for first, last in runs:
        if last not in anchors:
            return fail(
                last + 1 if first <= last else first,
                f"events {first} to {last} end on no signed anchor: event {last + 1} onwards is missing, or the "
                f"anchors were removed",
            )
    if not runs:
        return fail(None, "events.jsonl holds no events")

    # 4. the export event says what the bundle must cover
    if not isinstance(export_id, int):
        return fail(None, f"the export's own event {export_id} is not among the events")
    export = present.get(export_id)
    if export is None or export.get("action") != "audit.exported" or not isinstance(export.get("after"), dict):
        return fail(None, f"the export's own event {export_id} is not among the events")
    said = export["after"]
    for name in MANIFEST_CHECKED:
        if manifest.get(name) != said.get(name):
            return fail(export_id, f"manifest.json's {name!r} differs from what event {export_id} recorded")
    first_id, a_end = said.get("first_id"), said.get("anchored_through")
    end = runs[-1][1]
    expected: list[tuple[int, int]]
    if first_id is None:
        expected = [(export_id, int(end))]
    elif isinstance(a_end, int) and a_end + 1 < export_id:
        expected = [(int(first_id), a_end), (export_id, int(end))]
    else:
        expected = [(int(first_id), int(end))]
    for i, (want, got) in enumerate(zip(expected, runs, strict=False)):
        if got[0] > want[0] or (i > 0 and got[0] != want[0]):
            return fail(want[0], f"event {want[0]} is missing: the exported events start there")
        if got[0] < want[0]:
            return fail(got[0], f"event {got[0]} lies outside the exported range")
        if got[1] < want[1]:
            return fail(got[1] + 1, f"event {got[1] + 1} is missing")
        if got[1] > want[1]:
            return fail(want[1] + 1, f"event {want[1] + 1} lies outside the exported range")
    if len(runs) != len(expected):
        extra = runs[len(expected)][0] if len(runs) > len(expected) else expected[len(runs)][0]
        return fail(extra, f"event {extra} is missing or lies outside the exported range")

    # 5. files as recorded by the export event
    for name, digest in sorted(dict(said.get("files") or {}).items()):
        data = bundle.read(name)
        if data is None:
            return fail(None, f"{name} is missing from the bundle")
        if hashlib.sha256(data).hexdigest() != digest:
            return fail(None, f"{name} was changed after export: its SHA-256 is not the one event {export_id} recorded")
    result.ok = True
    return result


def main(argv: list[str] | None = None) -> int:
    """Verify the bundle named on the command line; print the outcome; return the exit status."""
    parser = argparse.ArgumentParser(description="Verify a TwinOps audit export bundle (zip or extracted folder).")
    parser.add_argument("bundle", help="the export zip, or the folder it was extracted to")
    parser.add_argument("--public-key", help="the anchors' Ed25519 public key in hex (default: the manifest's)")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    opts = parser.parse_args(argv)
    try:
        result = verify_bundle(opts.bundle, public_key=opts.public_key)
    except (BundleError, OSError, zipfile.BadZipFile) as exc:
        print(f"cannot read the bundle: {exc}", file=sys.stderr)
        return 2
    if opts.json:
        print(json.dumps(result.__dict__, sort_keys=True))
    elif result.ok:
        print(
            f"OK: {result.checked} events verified; anchored through event {result.anchored_through} "
            f"(signed at {result.anchored_at}) under public key {result.public_key}"
        )
        if not opts.public_key:
            print("Compare that key with one obtained independently (`twinops audit key`), or pass --public-key.")
    else:
        where = f"event {result.first_bad_id}" if result.first_bad_id is not None else "bundle"
        print(f"NOT VERIFIED: {where}: {result.problem}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
