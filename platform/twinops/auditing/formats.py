"""The bundle's data files: events.jsonl lines (the hashed content, as verify.py recomputes it) and decisions.csv."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from twinops.audit.canonical import canonical_dumps
from twinops.audit.chain import StoredEvent, legacy_fields
from twinops.auditing.selectors import COLUMNS, Decision
from twinops.core.spreadsheets import csv_cell


def event_line(e: StoredEvent) -> str:
    """Return an event as one events.jsonl line: the hashed fields, its scheme, hash and the previous hash.

    Scheme 2: "event" is the stored canonical text parsed; its canonical JSON is that text again, byte for byte
    (ValueError if not, which would make the bundle unverifiable). Scheme 1: the columns the legacy hash covers.
    """
    if e.scheme == 2:
        event = json.loads(e.canonical)
        if canonical_dumps(event) != e.canonical:
            raise ValueError(f"event {e.id}'s stored text is not canonical JSON; it cannot be exported verifiably")
    else:
        event = legacy_fields(e)
    return canonical_dumps({"event": event, "prev_sha256": e.prev_sha256, "scheme": e.scheme, "sha256": e.sha256})


def decisions_csv(decisions: Iterable[Decision]) -> bytes:
    """Return decisions.csv: a header, then one row per proposal with its chain (UTF-8, RFC 4180 quoting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for d in decisions:
        writer.writerow([csv_cell(d.cells[name]) for name in COLUMNS])
    return out.getvalue().encode("utf-8")
