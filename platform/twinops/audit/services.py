"""Write and verify audit events. Call `audit_record` inside the transaction that makes the change."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from twinops.audit.models import AuditEvent
from twinops.core import locks
from twinops.core.actors import Actor, ActorLike
from twinops.core.jsonable import json_plain

GENESIS_SHA256 = "0" * 64


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder, ensure_ascii=False)


def event_digest(*, prev_sha256: str, fields: dict[str, Any]) -> str:
    """Return the SHA-256 of an event: previous hash + canonical JSON of its fields."""
    return hashlib.sha256((prev_sha256 + _canonical(fields)).encode()).hexdigest()


def _event_fields(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "occurred_at": e.occurred_at.isoformat(),
        "actor": e.actor_label,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "reason": e.reason,
        "before": e.before,
        "after": e.after,
    }


def _jsonable(value: Any) -> Any:
    """Return value as stored: Django's JSON forms (dates, decimals), NaN and infinities as None."""
    return None if value is None else json_plain(json.loads(_canonical({"v": value}))["v"])


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
) -> AuditEvent:
    """Append an event to the chain; must run inside the caller's transaction so both commit or neither."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic() with the change it records")
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [locks.AUDIT_CHAIN])
    last = AuditEvent.objects.order_by("-id").only("id", "sha256").first()
    who = Actor.of(actor)
    event = AuditEvent(
        id=(last.id + 1) if last else 1,
        occurred_at=(at or timezone.now()).astimezone(UTC),
        actor=who.user,
        actor_label=who.label,
        action=action,
        object_type=object_type or (obj._meta.label_lower if obj is not None else ""),
        object_id=str(object_id if object_id is not None else (obj.pk if obj is not None else "")),
        reason=reason,
        before=_jsonable(before),
        after=_jsonable(after),
        prev_sha256=last.sha256 if last else GENESIS_SHA256,
    )
    event.sha256 = event_digest(prev_sha256=event.prev_sha256, fields=_event_fields(event))
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainCheck:
    """Outcome of verifying the chain: ok, how many events were checked, and the first bad event if any."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""


def audit_chain_verify() -> ChainCheck:
    """Recompute every hash in order and report the first event that does not match or is missing."""
    prev, expected_id, checked = GENESIS_SHA256, 1, 0
    with transaction.atomic():
        for e in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
            if e.id != expected_id:
                return ChainCheck(False, checked, expected_id, f"event {expected_id} is missing")
            if e.prev_sha256 != prev:
                return ChainCheck(False, checked, e.id, "previous-hash link does not match")
            if event_digest(prev_sha256=prev, fields=_event_fields(e)) != e.sha256:
                return ChainCheck(False, checked, e.id, "content does not match its hash")
            prev, expected_id, checked = e.sha256, expected_id + 1, checked + 1
    return ChainCheck(True, checked)
