"""Read the audit chain: its head, its rows as stored, and the outcome type of a verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Q

from twinops.audit import conf
from twinops.audit.anchors import Anchor, AnchorKeyError, anchor_last, signing_key
from twinops.audit.canonical import GENESIS_SHA256
from twinops.audit.chain import COLUMNS, ChainRun, Problem, StoredEvent, events_check
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


_CHECK_BATCH = 20_000  # rows per batch of the bulk check

# Per event, in one pass in the database: every column against the stored canonical text (as jsonb: strings and
# nesting exactly, numbers by exact value, occurred_at as Python's isoformat in UTC); the hashes are recomputed here.
# Never more lenient than chain.events_check: a batch it does not pass is checked again there, which names the problem.
_BULK_CHECK = """
SELECT id, prev_sha256, sha256, scheme, canonical, (
    scheme = 2
    AND c -> 'id' = to_jsonb(id)
    AND c -> 'occurred_at' = to_jsonb(
        to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', occurred_at)::bigint %% 1000000 = 0 THEN ''
           ELSE to_char(occurred_at AT TIME ZONE 'UTC', '.US') END
        || '+00:00')
    AND c -> 'actor' = to_jsonb(actor_label)
    AND c -> 'action' = to_jsonb(action)
    AND c -> 'object_type' = to_jsonb(object_type)
    AND c -> 'object_id' = to_jsonb(object_id)
    AND c -> 'reason' = to_jsonb(reason)
    AND coalesce(c -> 'line', '""') = to_jsonb(line_key)
    AND coalesce(c -> 'before', 'null') = coalesce(before, 'null')
    AND coalesce(c -> 'after', 'null') = coalesce(after, 'null')
) IS TRUE
FROM (
    SELECT *, CASE WHEN scheme = 2 THEN canonical::jsonb END AS c FROM audit_auditevent
    WHERE id > %s AND id <= %s ORDER BY id LIMIT %s
) AS e
ORDER BY id
"""
_Row = tuple[int, str, str, int, str, bool]  # id, prev_sha256, sha256, scheme, canonical, columns match the text


def _bulk_checked(*, after: int, to_id: int) -> list[_Row] | None:
    """Return a batch of rows with their column check from the database; None when it could not run."""
    try:
        with transaction.atomic(), connection.cursor() as cur:  # a savepoint: jsonb may refuse a canonical text
            cur.execute(_BULK_CHECK, [after, to_id, _CHECK_BATCH])
            return list(cur.fetchall())
    except DatabaseError:
        return None


def _bulk_checked_apart(after: int, to_id: int) -> list[_Row] | None:
    """_bulk_checked on this thread's own connection, closed afterwards (a read-ahead thread of _ReadAhead)."""
    try:
        return _bulk_checked(after=after, to_id=to_id)
    finally:
        connection.close()


class _ReadAhead:
    """The bulk check's batches in id order, the next READ_AHEAD of them checked meanwhile on connections of their own.

    The database's column check is nearly all of a verification's cost (hashing here is a few per cent), so on a
    machine with cores to spare the batches after the one being hashed are checked at the same time. Only when the
    caller says other connections see what this one does (`apart`: no uncommitted writes of its own, e.g. no test
    transaction) and the range spans more than one batch; a batch
    asked for off the read-ahead grid (a gap in the ids: the chain is damaged there) is checked here, on this
    connection, and the read-ahead starts again from it.
    """

    def __init__(self, *, to_id: int, first_after: int, apart: bool) -> None:
        spans = to_id - first_after > _CHECK_BATCH
        self.ahead = conf.verify_read_ahead() if spans and apart else 0
        self.to_id = to_id
        self.pool = ThreadPoolExecutor(self.ahead, thread_name_prefix="audit-verify") if self.ahead else None
        self.pending: dict[int, Future[list[_Row] | None]] = {}

    def batch(self, after: int) -> list[_Row] | None:
        """Return the rows after `after` (at most _CHECK_BATCH, up to to_id) with their column check."""
        if self.pool is None:
            return _bulk_checked(after=after, to_id=self.to_id)
        if after not in self.pending:
            self._drop()
        for k in range(self.ahead + 1):
            start = after + k * _CHECK_BATCH
            if start < self.to_id and start not in self.pending:
                self.pending[start] = self.pool.submit(_bulk_checked_apart, start, self.to_id)
        return self.pending.pop(after).result()

    def _drop(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending = {}

    def close(self) -> None:
        """Stop reading ahead; return once the threads (and their connections) are done."""
        if self.pool is not None:
            self._drop()
            self.pool.shutdown(wait=True)


def _batch_fine(rows: list[_Row], expected_id: int, prev: str) -> bool:
    sha256 = hashlib.sha256
    for eid, prev_sha256, stored, _, canonical, ok in rows:
        if not ok or eid != expected_id or prev_sha256 != prev:
            return False
        if sha256((prev + canonical).encode("utf-8")).hexdigest() != stored:  # = canonical.event_sha256
            return False
        expected_id, prev = expected_id + 1, stored
    return True


def audit_chain_checked(
    *, from_id: int, to_id: int, prev_sha256: str, apart: bool = False
) -> Iterator[Problem | ChainRun]:
    """Yield runs of events in [from_id, to_id] that check out (as chain.events_check), in order, or the first Problem.

    Batches are checked in bulk in the database; a batch with anything wrong (or scheme-1 events) is checked again
    event by event in Python, which names the first bad event exactly as `events_check` does. Stops early, without
    a Problem, when the rows run out.
    """
    batches = _ReadAhead(to_id=to_id, first_after=from_id - 1, apart=apart)
    try:
        yield from _checked(batches, from_id=from_id, to_id=to_id, prev_sha256=prev_sha256)
    finally:
        batches.close()


def _checked(batches: _ReadAhead, *, from_id: int, to_id: int, prev_sha256: str) -> Iterator[Problem | ChainRun]:
    expected, prev, seen_scheme2 = from_id, prev_sha256, False
    while expected <= to_id:
        rows = batches.batch(expected - 1)
        if rows == []:
            return
        if rows is not None and _batch_fine(rows, expected, prev):
            yield ChainRun(expected, [row[2] for row in rows])
            expected, prev, seen_scheme2 = rows[-1][0] + 1, rows[-1][2], True
            continue
        last = rows[-1][0] if rows else min(to_id, expected + _CHECK_BATCH - 1)
        run = ChainRun(expected, [])
        stored = audit_events_stored(from_id=expected, to_id=last)
        for item in events_check(stored, first_id=expected, prev_sha256=prev, seen_scheme2=seen_scheme2):
            if isinstance(item, Problem):
                if run.hashes:
                    yield run
                yield item
                return
            run.hashes.append(item.sha256)
            expected, prev, seen_scheme2 = item.id + 1, item.sha256, seen_scheme2 or item.scheme == 2
        if run.hashes:
            yield run
        if expected <= last:  # the rows ran out
            return


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


# --- the auditor's pages --------------------------------------------------------------------------------------------
LISTED = ("id", "occurred_at", "actor_label", "action", "object_type", "object_id", "line_key", "reason")


@dataclass(frozen=True)
class EventFilter:
    """What the auditor's log is narrowed to; empty fields filter nothing."""

    line: str = ""  # a line's key
    actor: str = ""  # a username or "system:<component>"
    action: str = ""  # e.g. "proposal.approved"
    object_type: str = ""  # e.g. "recommendations.recommendation"
    object_id: str = ""  # only with object_type
    start: datetime | None = None  # start <= occurred_at
    end: datetime | None = None  # occurred_at < end


@dataclass(frozen=True)
class EventsPage:
    """One page of the log, newest first, with the cursors of the pages either side (None: there is none)."""

    events: list[AuditEvent]
    newer_than: int | None  # pass as `after` for the next newer page
    older_than: int | None  # pass as `before` for the next older page


def audit_events_page(
    *, where: EventFilter, before: int | None = None, after: int | None = None, size: int = 50
) -> EventsPage:
    """Return a page of matching events, newest first: those older than `before`, or newer than `after` (keyset)."""
    rows = AuditEvent.objects.only(*LISTED)
    if where.line:
        rows = rows.filter(line_key=where.line)
    if where.actor:
        rows = rows.filter(actor_label=where.actor)
    if where.action:
        rows = rows.filter(action=where.action)
    if where.object_type:
        rows = rows.filter(object_type=where.object_type)
        if where.object_id:
            rows = rows.filter(object_id=where.object_id)
    if where.start is not None:
        rows = rows.filter(occurred_at__gte=where.start)
    if where.end is not None:
        rows = rows.filter(occurred_at__lt=where.end)
    if after is not None:  # the page just newer than `after`: read upwards, then show newest first
        events = list(rows.filter(id__gt=after).order_by("id")[: size + 1])
        more_newer = len(events) > size
        events = events[:size][::-1]
        return EventsPage(events, events[0].id if more_newer and events else None, events[-1].id if events else None)
    if before is not None:
        rows = rows.filter(id__lt=before)
    events = list(rows.order_by("-id")[: size + 1])
    more_older = len(events) > size
    events = events[:size]
    newer = events[0].id if before is not None and events else None
    return EventsPage(events, newer, events[-1].id if more_older else None)


def audit_event_get(*, event_id: int) -> AuditEvent:
    """Return one event; raise AuditEvent.DoesNotExist when there is none."""
    return AuditEvent.objects.get(pk=event_id)


def audit_events_about(*, objects: list[tuple[str, str]]) -> list[AuditEvent]:
    """Return the events about any of the (object_type, object_id) pairs, oldest first (their canonical text left out)."""
    if not objects:
        return []
    match = Q()
    for object_type, object_id in objects:
        match |= Q(object_type=object_type, object_id=object_id)
    return list(AuditEvent.objects.filter(match).defer("canonical").order_by("id"))


@dataclass(frozen=True)
class ChainStatus:
    """How far the chain is known good: verified through an event, the newest anchor covering it, and any problem."""

    ok: bool
    verified_through: int  # newest event checked (0: none)
    verified_at: datetime | None  # when that event was written
    anchored_through: int | None  # event of the newest signed anchor, when its hash still matches
    anchored_at: str  # when that anchor was signed
    unchecked: int = 0  # newer events this status did not reach (more than a page view checks)
    first_bad_id: int | None = None
    problem: str = ""


STATUS_CHECK_LIMIT = 20_000  # events after the newest anchor checked per status; the beat anchors every minute


def audit_status(*, limit: int = STATUS_CHECK_LIMIT) -> ChainStatus:
    """Check the events after the newest signed anchor (at most `limit`) and that the anchored event is intact.

    Cheap enough for every auditor page: the anchor task verified everything up to its anchor before signing it,
    and a rewrite before the anchor changes the anchored event's hash. `twinops audit verify` walks the whole chain.
    """
    head = audit_head()
    if head is None:
        return ChainStatus(True, 0, None, None, "")
    anchor, problem = _anchor_newest()
    if problem:
        return ChainStatus(False, 0, None, None, "", problem=problem)
    start, prev, anchored = 1, GENESIS_SHA256, None
    if anchor is not None:
        signed = audit_head(at_most=anchor.event_id)
        if signed is None or signed.id != anchor.event_id:
            text = f"event {anchor.event_id} was signed at {anchor.anchored_at} but is missing (the tail was deleted)"
            return ChainStatus(False, 0, None, None, "", first_bad_id=anchor.event_id, problem=text)
        if signed.sha256 != anchor.sha256:
            text = f"event {anchor.event_id}'s hash differs from the one signed at {anchor.anchored_at} (rewritten)"
            return ChainStatus(False, 0, None, None, "", first_bad_id=anchor.event_id, problem=text)
        start, prev, anchored = anchor.event_id + 1, anchor.sha256, signed
    end = min(head.id, start + limit - 1)
    through = anchored.id if anchored is not None else 0  # newest event checked
    for item in audit_chain_checked(from_id=start, to_id=end, prev_sha256=prev):
        if isinstance(item, Problem):
            return _status(False, through, anchor, head.id, first_bad_id=item.event_id, problem=item.text)
        through = item.last_id
    if through < end:  # rows ran out before the head: events are missing
        return _status(False, through, anchor, head.id, first_bad_id=through + 1, problem="events are missing")
    return _status(True, through, anchor, head.id)


def _status(ok: bool, through: int, anchor: Anchor | None, head_id: int, **problem: Any) -> ChainStatus:
    checked = through
    event = audit_head(at_most=through) if through else None
    return ChainStatus(
        ok,
        checked,
        event.occurred_at if event is not None else None,
        anchor.event_id if anchor is not None else None,
        anchor.anchored_at if anchor is not None else "",
        unchecked=max(0, head_id - checked) if ok else 0,
        **problem,
    )


def _anchor_newest() -> tuple[Anchor | None, str]:
    """Return the newest anchor (None when nothing was signed yet) or the reason it cannot be trusted."""
    try:
        key = signing_key(conf.signing_key_path(), create=False).public_key()
    except AnchorKeyError:
        return None, ""  # no key yet: nothing was ever anchored on this installation
    anchor = anchor_last(log=conf.anchor_log_path(), public_key=key)
    if anchor is not None and not anchor.signature_ok:
        return None, "the newest line of the anchor log has no valid signature under the audit signing key"
    return anchor, ""
