"""Write and verify audit events. Call `audit_record` inside the transaction that makes the change.

Appending takes the chain lock (`core.locks.AUDIT_CHAIN`) until the caller's transaction ends, so the chain never
forks. Recorded directly in the block that commits, events are appended in the COMMIT's own message (lock, inserts,
commit, WAL flush in one round trip), so the lock is held only inside the database; their ids and hashes are set
when the block ends. Recorded in a nested block, an event is appended at once and the lock held to the commit. A
caller with long work after its first event (an import) wraps that work in `audit_deferred()`: its events are then
appended when the block ends, and the lock is held only from there to the commit.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from twinops.audit import conf
from twinops.audit.anchors import (
    Anchor,
    AnchorKeyError,
    anchor_append,
    anchors_read,
    signing_key,
)
from twinops.audit.canonical import GENESIS_SHA256, SCHEME, canonical_around_id, storable
from twinops.audit.chain import Problem
from twinops.audit.models import AuditEvent
from twinops.audit.selectors import ChainCheck, audit_chain_checked, audit_head
from twinops.config.postgres.base import CommitRider
from twinops.core import locks
from twinops.core.actors import Actor, ActorLike

__all__ = ["GENESIS_SHA256", "AnchorKeyError", "ChainCheck", "audit_anchor", "audit_chain_verify", "audit_record"]

_deferred = threading.local()  # .events: the events an audit_deferred() block holds back, in order; None outside


def audit_record(
    *,
    actor: ActorLike,
    action: str,
    obj: Any = None,
    object_type: str | None = None,
    object_id: str | None = None,
    reason: str = "",
    before: Any = None,
    after: Any = None,
    at: datetime | None = None,
    line: str | None = None,
) -> AuditEvent:
    """Append an event to the chain; must run inside the caller's transaction so both commit or neither.

    Raises ValueError naming the field when a value cannot be stored exactly (NaN, infinity, NUL characters), so
    the caller's transaction rolls back and nothing is half-stored. Inside `audit_deferred()` the event is returned
    unsaved and appended (id and hashes filled in) when the block ends. `line` (a line's key) defaults to the line
    `obj` is or belongs to (its `line`), else the "line" named in `after` or `before`.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic() with the change it records")
    who = Actor.of(actor)
    event = AuditEvent(
        occurred_at=(at or timezone.now()).astimezone(UTC),
        actor=who.user,
        actor_label=storable(who.label, field="actor"),
        action=storable(action, field="action"),
        object_type=storable(object_type or (obj._meta.label_lower if obj is not None else ""), field="object_type"),
        object_id=storable(
            str(object_id if object_id is not None else (obj.pk if obj is not None else "")), field="object_id"
        ),
        reason=storable(reason, field="reason"),
        before=storable(before, field="before"),
        after=storable(after, field="after"),
        scheme=SCHEME,
        line_key=storable(line if line is not None else _line_key(obj, before, after), field="line"),
    )
    held = getattr(_deferred, "events", None)
    if held is not None:
        held.append(event)
    else:
        _append([event])
    return event


@contextmanager
def audit_deferred() -> Iterator[None]:
    """Hold back the events recorded inside the block and append them when it ends, inside the same transaction.

    For long work in one transaction (a history import): appends elsewhere do not wait for it, only for the short
    step from the block's end to the commit. Events recorded inside are unsaved (no id yet) until the block ends.
    """
    if getattr(_deferred, "events", None) is not None:
        yield  # already deferred by an outer block
        return
    if not connection.in_atomic_block:
        raise RuntimeError("audit_deferred must run inside transaction.atomic() with the changes it records")
    _deferred.events = []
    try:
        yield
        events = _deferred.events
    finally:
        _deferred.events = None
    if events:
        _append(events)


# The chain lock, the head read and the event inserted with its hash, in one call of the database function
# audit_append (migration 0005: its plans are kept for the session, where this INSERT sent as text was planned for
# every event). The hash is the same as canonical.event_sha256: sha256 of the UTF-8 bytes (the database's encoding)
# of previous hash + canonical text.
_APPEND = (
    "SELECT event_id, event_prev_sha256, event_sha256 FROM audit_append(%(lock)s, %(genesis)s, %(occurred_at)s, "
    "%(actor_id)s, %(actor)s, %(action)s, %(object_type)s, %(object_id)s, %(reason)s, %(before)s::jsonb, "
    "%(after)s::jsonb, %(prefix)s, %(suffix)s, %(scheme)s::smallint, %(line)s)"
)


# Group commit: the lock is released when the commit returns, and waiting there for the disk would let one writer at
# a time through. So the transaction commits without waiting for its WAL to reach the disk (the chain lock is held
# only until its commit record is written), and right after the commit, before the caller goes on, the WAL is
# flushed up to it, outside the lock, where many writers' flushes share one fsync. WAL is written in commit order, so
# a crash in that window loses only the newest events, each with its business change: the chain never forks.
# pg_logical_emit_message(..., flush => true) needs PostgreSQL 17+; older servers wait for the disk under the lock.
_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
_WAL_FLUSH = "SELECT pg_logical_emit_message(false, 'twinops.audit', '', true)"


@dataclass
class _ChainRider(CommitRider):
    """The events of one transaction, appended in its COMMIT's own message (config/postgres)."""

    events: list[AuditEvent] = field(default_factory=list)
    savepoint_state: int = 0  # the connection's savepoint counter when it was made: a savepoint since ends riding


def _wal_flush() -> None:
    """Wait until the WAL, the commit just made included, is on disk."""
    with connection.cursor() as cur:
        cur.execute(_WAL_FLUSH)


def _append(events: list[AuditEvent]) -> None:
    """Give the events the next ids and hashes: with the commit when this block commits, else now (lock to commit).

    Riding with the commit, the chain lock is taken, the events inserted and the transaction committed (and its WAL
    flushed) in one message, so the lock is held for no client round trip at all. An event recorded in a nested block
    is appended at once instead (a savepoint rollback must take it away), after any the transaction holds back.
    """
    riders: list[CommitRider] | None = getattr(connection, "commit_riders", None)
    rider = next((r for r in riders or [] if isinstance(r, _ChainRider)), None)
    blocks = connection.atomic_blocks
    commits_here = riders is not None and len(blocks) == 1 and not getattr(blocks[0], "_from_testcase", False)
    if commits_here and (rider is None or rider.savepoint_state == connection.savepoint_state):
        if rider is None:
            rider = _ChainRider(savepoint_state=connection.savepoint_state)
            if connection.pg_version >= 170000:
                rider.before.append((_ASYNC_COMMIT, {}))
                rider.after = _WAL_FLUSH
            rider.done = functools.partial(_rode, rider)
            connection.commit_ride(rider)
        rider.events += events
        rider.before += [(_APPEND, _params(event)) for event in events]
        return
    if rider is not None:  # keep the order of recording: what this transaction held back goes first
        riders.remove(rider)  # type: ignore[union-attr]
        events = rider.events + events
    _append_now(events)


def _rode(rider: _ChainRider, results: list[Any]) -> None:
    """Fill in the ids and hashes the commit message gave the rider's events (its last results, in order)."""
    inserts = rider.before[-len(rider.events) :]
    for event, rows, (_, params) in zip(rider.events, results[-len(rider.events) :], inserts, strict=True):
        (event.id, event.prev_sha256, event.sha256) = rows[0]
        _saved(event, params)


def _append_now(events: list[AuditEvent]) -> None:
    """Insert the events now, holding the chain lock until the transaction ends."""
    group_commit = connection.pg_version >= 170000
    sql = ";\n".join([_ASYNC_COMMIT, _APPEND] if group_commit else [_APPEND])
    if group_commit:
        transaction.on_commit(_wal_flush)
    with connection.cursor() as cur:
        for event in events:
            params = _params(event)
            cur.execute(sql, params)
            while cur.nextset():  # on to the append's row, the last result
                pass
            event.id, event.prev_sha256, event.sha256 = cur.fetchone()
            _saved(event, params)


def _params(event: AuditEvent) -> dict[str, Any]:
    """Return the INSERT's parameters for an event (its canonical text made here, around the id to come)."""
    prefix, suffix = canonical_around_id(_hashed_fields(event))
    return {
        "occurred_at": event.occurred_at,
        "actor_id": event.actor_id,
        "actor": event.actor_label,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "reason": event.reason,
        "before": None if event.before is None else json.dumps(event.before),
        "after": None if event.after is None else json.dumps(event.after),
        "prefix": prefix,
        "suffix": suffix,
        "scheme": SCHEME,
        "line": event.line_key,
        "genesis": GENESIS_SHA256,
        "lock": locks.AUDIT_CHAIN,
    }


def _saved(event: AuditEvent, params: dict[str, Any]) -> None:
    """Mark an event as stored, its canonical text complete (`params`: those it was inserted with)."""
    event.canonical = f"{params['prefix']}{event.id}{params['suffix']}"
    event._state.adding, event._state.db = False, connection.alias


def _line_key(obj: Any, before: Any, after: Any) -> str:
    """Return the key of the line an event's object is or belongs to, else the "line" its values name, else ''."""
    meta = getattr(obj, "_meta", None)
    if meta is not None and meta.label_lower == "lines.line":
        return str(obj.key)
    if meta is not None and getattr(obj, "line_id", None) is not None:
        return str(obj.line.key)
    for values in (after, before):
        if isinstance(values, dict) and isinstance(values.get("line"), str):
            return str(values["line"])
    return ""


def _hashed_fields(e: AuditEvent) -> dict[str, Any]:
    """Return the fields an event's canonical text holds, but its id (given under the chain lock)."""
    if e.line_key:  # hashed only when set: events without a line keep the canonical form they always had
        return {**_hashed_fields_base(e), "line": e.line_key}
    return _hashed_fields_base(e)


def _hashed_fields_base(e: AuditEvent) -> dict[str, Any]:
    return {
        "occurred_at": e.occurred_at.isoformat(),
        "actor": e.actor_label,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "reason": e.reason,
        "before": e.before,
        "after": e.after,
    }


def audit_chain_verify(*, from_id: int = 1, to_id: int | None = None) -> ChainCheck:
    """Recompute every hash from `from_id` to `to_id` (default: the head) and report the first bad event.

    This checks the database against itself; `audit_verify` also checks it against the signed anchors.
    """
    return _walk(from_id=from_id, to_id=to_id, anchors=[])


def audit_verify(*, from_id: int = 1, to_id: int | None = None, public_key: Any = None) -> ChainCheck:
    """Check the chain from `from_id` to `to_id` against itself and against the anchor log's signed heads.

    The walk goes on to the first anchor at or after `to_id`, so every event checked is covered by a signature
    when one exists. `public_key` (Ed25519) defaults to the signing key's; a bad signature in the log is reported.
    """
    key = public_key or signing_key(conf.signing_key_path(), create=False).public_key()
    anchors = anchors_read(log=conf.anchor_log_path(), public_key=key)
    forged = next((a for a in anchors if not a.signature_ok), None)
    if forged is not None:
        return ChainCheck(False, 0, None, f"anchor log line {forged.line} has no valid signature under this key")
    return _walk(from_id=from_id, to_id=to_id, anchors=anchors)


def _walk(*, from_id: int, to_id: int | None, anchors: list[Anchor]) -> ChainCheck:
    head = audit_head()
    head_id = head.id if head else 0
    end = head_id if to_id is None else min(to_id, head_id)
    covering = [a for a in anchors if a.event_id >= max(end, from_id)]
    walk_end = max(end, min((a.event_id for a in covering), default=end))
    if to_id is None:  # through the head: on to the newest anchor, or a tail cut back onto an anchored event passes
        walk_end = max([walk_end] + [a.event_id for a in anchors])
    by_id: dict[int, list[Anchor]] = {}
    for a in anchors:
        if from_id <= a.event_id <= walk_end:
            by_id.setdefault(a.event_id, []).append(a)
    prev = GENESIS_SHA256
    if from_id > 1:
        before = audit_head(at_most=from_id - 1)
        if before is None or before.id != from_id - 1:
            return ChainCheck(False, 0, from_id - 1, f"event {from_id - 1} is missing")
        prev = before.sha256
    checked, trusted_through, anchored_at = 0, from_id - 1, ""
    apart = not connection.in_atomic_block  # nothing uncommitted here: other connections may check batches too
    with transaction.atomic():
        for item in audit_chain_checked(from_id=from_id, to_id=walk_end, prev_sha256=prev, apart=apart):
            if isinstance(item, Problem):
                return ChainCheck(False, checked, item.event_id, item.text)
            for event_id in sorted(e for e in by_id if item.first_id <= e <= item.last_id):
                sha256 = item.hashes[event_id - item.first_id]
                for a in by_id[event_id]:
                    if a.sha256 != sha256:
                        return ChainCheck(
                            False,
                            event_id - from_id,
                            trusted_through + 1,
                            f"events {trusted_through + 1} to {event_id} were rewritten: event {event_id}'s hash "
                            f"differs from the one signed at {a.anchored_at}",
                        )
                    trusted_through, anchored_at = event_id, a.anchored_at
            checked += len(item.hashes)
    if from_id + checked <= walk_end:  # the rows ran out early: the newest events are gone
        missing = from_id + checked
        newest = max(anchors, key=lambda a: a.event_id)
        return ChainCheck(
            False,
            checked,
            missing,
            f"event {missing} is missing: the chain ends at {missing - 1} but event {newest.event_id} was signed "
            f"at {newest.anchored_at} (the tail was deleted)",
        )
    return ChainCheck(True, checked, anchored_through=trusted_through if anchored_at else None, anchored_at=anchored_at)


def audit_anchor(*, now: datetime | None = None) -> dict[str, Any] | None:
    """Sign the chain head and append it to the anchor log, once the events since the last anchor verify.

    Returns the anchor written, or None when there is nothing new to sign. Raises AnchorKeyError for a bad key
    file and ValueError, signing nothing, when the chain since the last anchor does not verify.
    """
    key = signing_key(conf.signing_key_path(), create=True)
    log = conf.anchor_log_path()
    head = audit_head()
    if head is None:
        return None
    anchors = [a for a in anchors_read(log=log, public_key=key.public_key()) if a.signature_ok]
    last = max(anchors, key=lambda a: a.event_id, default=None)
    if last is not None and last.event_id == head.id and last.sha256 == head.sha256:
        return None
    check = _walk(from_id=last.event_id if last else 1, to_id=head.id, anchors=[last] if last else [])
    if not check.ok:
        raise ValueError(f"not signing the audit chain head: event {check.first_bad_id}: {check.problem}")
    return anchor_append(
        log=log,
        key=key,
        event_id=head.id,
        sha256=head.sha256,
        occurred_at=head.occurred_at,
        anchored_at=(now or timezone.now()).astimezone(UTC),
    )
