"""Read the audit chain: its head, its rows as stored, and the outcome type of a verification."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from twinops.audit.chain import COLUMNS, StoredEvent
from twinops.audit.models import AuditEvent

_PAGE = 5000  # rows per keyset page: memory stays flat at millions of events


@dataclass(frozen=True)
class ChainCheck:
    """Outcome of verifying the chain: ok, how many events were checked, and the first bad event if any."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    anchored_through: int | None = None  # newest event whose hash matched a signed anchor
    anchored_at: str = ""  # when that anchor was signed


def audit_head(*, at_most: int | None = None) -> AuditEvent | None:
    """Return the newest event (with id at most `at_most` when given), or None when there is none."""
    events = AuditEvent.objects.order_by("-id").only("id", "sha256", "occurred_at")
    if at_most is not None:
        events = events.filter(id__lte=at_most)
    return events.first()


def audit_events_stored(*, from_id: int, to_id: int) -> Iterator[StoredEvent]:
    """Yield the events with ids in [from_id, to_id] in order, exactly as stored, a page at a time."""
    after = from_id - 1
    while after < to_id:
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT {COLUMNS} FROM audit_auditevent WHERE id > %s AND id <= %s ORDER BY id LIMIT %s",
                [after, to_id, _PAGE],
            )
            rows = cur.fetchall()
        if not rows:
            return
        for row in rows:
            yield StoredEvent(*row)
        after = rows[-1][0]


def audit_id_range(*, start: datetime | None, end: datetime | None) -> tuple[int, int | None]:
    """Return the first and last event ids with start <= occurred_at < end (open ends: the chain's ends)."""
    events = AuditEvent.objects.all()
    if start is not None:
        events = events.filter(occurred_at__gte=start)
    if end is not None:
        events = events.filter(occurred_at__lt=end)
    first = events.order_by("id").values_list("id", flat=True).first()
    last = events.order_by("-id").values_list("id", flat=True).first()
    if first is None:  # nothing in the range: check nothing but the anchors' tail rule
        return (1, 0) if end is not None else (1, None)
    return first, (last if end is not None else None)


def audit_event_values(event: AuditEvent) -> dict[str, Any]:
    """Return an event's fields exactly as hashed (scheme 2: its canonical text; scheme 1: its columns)."""
    if event.canonical:
        return dict(json.loads(event.canonical))
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor_label,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "reason": event.reason,
        "before": event.before,
        "after": event.after,
    }
