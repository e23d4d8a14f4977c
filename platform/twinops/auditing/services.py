"""Export the audit log of a time range as a bundle anyone can verify without trusting TwinOps (docs/audit.md).

The bundle (zip): manifest.json, events.jsonl, anchors.jsonl, decisions.csv, report.html and verify.py. Its events
run from the range's first event to the first signed anchor at or after its last, then from the export's own event
(`audit.exported`, which records the range and the SHA-256 of decisions.csv, report.html and verify.py) to the
anchor signed right after it; verify.py checks all of that with nothing but the public key.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.db import transaction
from django.utils import timezone

from twinops.audit import conf
from twinops.audit.anchors import anchors_read, public_key_hex, signing_key
from twinops.audit.selectors import audit_events_stored, audit_head, audit_id_range
from twinops.audit.services import audit_anchor, audit_record, audit_verify
from twinops.auditing import verify
from twinops.auditing.formats import decisions_csv, event_line
from twinops.auditing.report import ReportHeader, report_html
from twinops.auditing.selectors import decisions_between
from twinops.core.actors import Actor, ActorLike
from twinops.core.roles import capability_require


class ExportRefused(Exception):
    """The chain does not verify, so no bundle is made: it would vouch for tampered events."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the range's event ids, the export's own event, the anchored head and the key."""

    first_id: int | None  # None: no event in the range
    last_id: int | None
    export_event_id: int
    anchored_through: int
    events: int  # lines in events.jsonl
    proposals: int  # rows in decisions.csv
    public_key: str


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _signed_anchor_lines() -> list[tuple[int, str]]:
    """Return (event id, line as written) of every anchor whose signature verifies under the signing key."""
    log = conf.anchor_log_path()
    key = signing_key(conf.signing_key_path(), create=True)
    if not log.exists():
        return []
    texts = log.read_text(encoding="utf-8").split("\n")
    return [
        (a.event_id, texts[a.line - 1]) for a in anchors_read(log=log, public_key=key.public_key()) if a.signature_ok
    ]


def _first_anchor_from(anchors: list[tuple[int, str]], event_id: int) -> int | None:
    return min((eid for eid, _ in anchors if eid >= event_id), default=None)


def _segments(first_id: int | None, a_end: int | None, export_id: int, b_end: int) -> list[tuple[int, int]]:
    """Return the runs of events the bundle holds (verify.py expects exactly these)."""
    if first_id is None:
        return [(export_id, b_end)]
    if a_end is not None and a_end + 1 < export_id:
        return [(first_id, a_end), (export_id, b_end)]
    return [(first_id, b_end)]


def _event_lines(segments: list[tuple[int, int]]) -> Iterator[str]:
    for lo, hi in segments:
        for e in audit_events_stored(from_id=lo, to_id=hi):
            yield event_line(e)


def audit_export(
    *,
    actor: ActorLike,
    start: datetime | None,
    end: datetime | None,
    out: str | Path | IO[bytes],
    line_key: str | None = None,
) -> ExportResult:
    """Write the bundle of events in [start, end) (decisions of one line if given) to `out`; audit the export.

    Raises PermissionDenied without the export capability, ExportRefused when the chain does not verify against
    its anchors, AnchorKeyError for a bad signing key file.
    """
    who = Actor.of(actor)
    capability_require(actor=who, capability="export_audit")
    key = signing_key(conf.signing_key_path(), create=True)
    try:
        audit_anchor()  # sign the head now, so the range's events are covered by an anchor
    except ValueError as exc:
        raise ExportRefused(f"not exporting: {exc}") from None
    from_id, to_id = audit_id_range(start=start, end=end)
    head = audit_head()
    last = to_id if to_id is not None else (head.id if head else 0)
    first_id, last_id = (from_id, last) if last >= from_id else (None, None)
    if first_id is not None:
        check = audit_verify(from_id=first_id, to_id=last_id, public_key=key.public_key())
        if not check.ok:
            raise ExportRefused(f"not exporting: the audit chain fails at event {check.first_bad_id}: {check.problem}")
    a_end = _first_anchor_from(_signed_anchor_lines(), last_id) if last_id is not None else None

    decisions = list(decisions_between(start=start, end=end, line_key=line_key))
    csv_bytes = decisions_csv(decisions)
    verify_bytes = Path(verify.__file__).read_bytes()
    exported_at = timezone.now().astimezone(UTC)
    range_text = f"{_iso(start) or 'the first event'} to {_iso(end) or 'now'}"
    header = ReportHeader(
        range_text=range_text,
        line=line_key,
        first_id=first_id,
        last_id=last_id,
        events=0 if first_id is None or last_id is None else last_id - first_id + 1,
        anchored_through=a_end,
        anchored_at="",
        public_key=public_key_hex(key),
        exported_by=who.label,
        exported_at=exported_at.isoformat(),
    )
    report_bytes = report_html(header=header, decisions=decisions)
    said: dict[str, Any] = {
        "format": verify.FORMAT,
        "from": _iso(start),
        "to": _iso(end),
        "line": line_key,
        "first_id": first_id,
        "last_id": last_id,
        "anchored_through": a_end,
        "files": {
            "decisions.csv": hashlib.sha256(csv_bytes).hexdigest(),
            "report.html": hashlib.sha256(report_bytes).hexdigest(),
            "verify.py": hashlib.sha256(verify_bytes).hexdigest(),
        },
    }
    with transaction.atomic():
        event = audit_record(
            actor=who,
            action="audit.exported",
            object_type="audit.export",
            object_id=range_text[:64],
            after=said,
            at=exported_at,
        )
    try:
        audit_anchor()  # sign the head again: it now holds the export's own event
    except ValueError as exc:
        raise ExportRefused(f"not exporting: {exc}") from None
    anchors = _signed_anchor_lines()
    b_end = _first_anchor_from(anchors, event.id)
    if b_end is None:
        raise ExportRefused(f"not exporting: no signed anchor covers the export's event {event.id}")
    segments = _segments(first_id, a_end, event.id, b_end)
    manifest = {
        **said,
        "export_event_id": event.id,
        "public_key": public_key_hex(key),
        "exported_at": exported_at.isoformat(),
        "exported_by": who.label,
        "segments": segments,
        "verify": "python verify.py BUNDLE   (compare public_key with `twinops audit key`)",
    }
    in_segments = [text for eid, text in anchors if any(lo <= eid <= hi for lo, hi in segments)]
    count = _write_zip(out, manifest, segments, in_segments, csv_bytes, report_bytes, verify_bytes)
    return ExportResult(first_id, last_id, event.id, b_end, count, len(decisions), public_key_hex(key))


def _write_zip(
    out: str | Path | IO[bytes],
    manifest: dict[str, Any],
    segments: list[tuple[int, int]],
    anchor_lines: list[str],
    csv_bytes: bytes,
    report_bytes: bytes,
    verify_bytes: bytes,
) -> int:
    """Write the bundle; a path is written to a temporary file first and renamed, so no half bundle is left."""
    target = Path(out) if isinstance(out, str | Path) else None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp") if target else None
    fh: IO[bytes] = open(tmp, "wb") if tmp else out  # type: ignore[assignment]
    count = 0
    try:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            with zf.open("events.jsonl", "w", force_zip64=True) as events:
                buffer: list[str] = []
                for text in _event_lines(segments):
                    buffer.append(text)
                    count += 1
                    if len(buffer) >= 5000:
                        events.write(("\n".join(buffer) + "\n").encode("utf-8"))
                        buffer = []
                if buffer:
                    events.write(("\n".join(buffer) + "\n").encode("utf-8"))
            zf.writestr("anchors.jsonl", "".join(text + "\n" for text in anchor_lines))
            zf.writestr("decisions.csv", csv_bytes)
            zf.writestr("report.html", report_bytes)
            zf.writestr("verify.py", verify_bytes)
        if tmp is not None and target is not None:
            fh.close()
            os.replace(tmp, target)
    finally:
        if tmp is not None:
            fh.close()
            tmp.unlink(missing_ok=True)
    return count
