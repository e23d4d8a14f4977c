"""Check a run of audit events, as stored, against their hashes, each other and the signed anchors of the head."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from twinops.audit.canonical import event_sha256

COLUMNS = (
    "id, occurred_at, actor_label, action, object_type, object_id, reason, before::text, after::text, "
    "prev_sha256, sha256, scheme, canonical, line_key"
)
_SCALARS = ("actor", "action", "object_type", "object_id", "reason")


@dataclass(frozen=True)
class StoredEvent:
    """An event's row as the database holds it (jsonb columns as their text)."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    reason: str
    before: str | None
    after: str | None
    prev_sha256: str
    sha256: str
    scheme: int
    canonical: str
    line_key: str = ""  # hashed as "line" in the canonical text when set


@dataclass(frozen=True)
class ChainRun:
    """Consecutive events that checked out: ids `first_id`, `first_id + 1`, … with these hashes."""

    first_id: int
    hashes: list[str]

    @property
    def last_id(self) -> int:
        """Return the id of the run's last event."""
        return self.first_id + len(self.hashes) - 1


@dataclass(frozen=True)
class Problem:
    """The first event that fails a check, and what is wrong with it."""

    event_id: int
    text: str


def legacy_digest(*, prev_sha256: str, fields: dict[str, Any]) -> str:
    """Return the scheme-1 SHA-256 of an event: previous hash + JSON of its columns as read back."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder, ensure_ascii=False)
    return hashlib.sha256((prev_sha256 + text).encode()).hexdigest()


def legacy_fields(e: StoredEvent) -> dict[str, Any]:
    """Return the fields a scheme-1 hash covers."""
    return {
        "id": e.id,
        "occurred_at": e.occurred_at.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "reason": e.reason,
        "before": None if e.before is None else json.loads(e.before),
        "after": None if e.after is None else json.loads(e.after),
    }


def _same(a: Any, b: Any) -> bool:
    """Return whether two JSON values are equal, numbers by value (jsonb writes 1e20 as 100000000000000000000)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        try:  # as doubles: jsonb keeps 1e300 as its exact decimal, which is not the double's exact value
            return float(a) == float(b)
        except OverflowError:
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _columns_match(e: StoredEvent) -> str:
    """Return '' when the columns hold what the canonical text says, else the first field that differs."""
    try:
        doc = json.loads(e.canonical)
    except ValueError:
        return "canonical"
    if not isinstance(doc, dict) or doc.get("id") != e.id:
        return "id"
    try:
        if datetime.fromisoformat(doc.get("occurred_at", "")) != e.occurred_at:
            return "occurred_at"
    except (TypeError, ValueError):
        return "occurred_at"
    for name in _SCALARS:
        if doc.get(name) != getattr(e, name):
            return name
    if doc.get("line", "") != e.line_key:
        return "line"
    for name in ("before", "after"):
        stored = getattr(e, name)
        if not _same(doc.get(name), None if stored is None else json.loads(stored)):
            return name
    return ""


def events_check(
    events: Iterable[StoredEvent], *, first_id: int, prev_sha256: str, seen_scheme2: bool = False
) -> Iterator[Problem | StoredEvent]:
    """Yield each event once it checks out, or the first Problem (then stop): ids, links, hashes, columns.

    `seen_scheme2`: a scheme-2 event came before `first_id` (a scheme-1 event may no longer follow).
    """
    expected_id, prev = first_id, prev_sha256
    for e in events:
        if e.id != expected_id:
            yield Problem(expected_id, f"event {expected_id} is missing")
            return
        if e.prev_sha256 != prev:
            yield Problem(e.id, "previous-hash link does not match")
            return
        if e.scheme == 2:
            seen_scheme2 = True
            if event_sha256(prev_sha256=prev, canonical=e.canonical) != e.sha256:
                yield Problem(e.id, "content does not match its hash")
                return
            field = _columns_match(e)
            if field:
                yield Problem(e.id, f"content does not match its hash: the stored {field} differs from the hashed text")
                return
        elif e.scheme == 1 and not seen_scheme2:
            if legacy_digest(prev_sha256=prev, fields=legacy_fields(e)) != e.sha256:
                yield Problem(e.id, "content does not match its hash")
                return
            if e.line_key:  # scheme 1 hashed no line: one set later was not there when it was hashed
                yield Problem(e.id, "content does not match its hash: the stored line differs from the hashed text")
                return
        else:
            yield Problem(e.id, f"hash scheme {e.scheme} is not allowed here (schemes never go back)")
            return
        prev, expected_id = e.sha256, expected_id + 1
        yield e
