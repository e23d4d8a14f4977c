"""Page data of the auditor's pages: the event log with its filters, one event with its diff, a decision chain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from twinops.audit.models import AuditEvent
from twinops.audit.selectors import ChainStatus, EventFilter, audit_event_get, audit_events_page, audit_status
from twinops.auditing.decisions import DecisionChain, decision_chain
from twinops.recommendations.selectors import recommendation_by_id

PAGE_SIZE = 50
PROPOSAL = "recommendations.recommendation"


class FilterError(ValueError):
    """A filter of the log cannot be read; the message names the field."""


def chain_status_context() -> dict[str, Any]:
    """Return the chain's status for the banner every auditor page shows."""
    status = audit_status()
    return {"chain": status, "chain_summary": chain_summary(status)}


def chain_summary(status: ChainStatus) -> str:
    """Return the chain's status in one sentence: verified through event N at T, anchored at T'."""
    if not status.ok:
        where = f" at event {status.first_bad_id}" if status.first_bad_id else ""
        return f"The audit chain does NOT verify{where}: {status.problem}."
    if status.verified_through == 0:
        return "The audit log is empty."
    at = timezone.localtime(status.verified_at).strftime("%Y-%m-%d %H:%M:%S %Z") if status.verified_at else ""
    text = f"Verified through event {status.verified_through} at {at}"
    if status.anchored_through is not None:
        signed = datetime.fromisoformat(status.anchored_at)
        text += f", anchored at {timezone.localtime(signed).strftime('%Y-%m-%d %H:%M:%S %Z')}"
        text += f" (event {status.anchored_through})"
    else:
        text += "; not anchored yet (no signed chain head)"
    if status.unchecked:
        text += f"; {status.unchecked} newer events not checked here (run twinops audit verify)"
    return text + "."


def when(params: QueryDict, name: str) -> datetime | None:
    """Return the time a form field gives (the page's zone when it names none), None when empty."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise FilterError(f"The {name!r} time {raw!r} is not a date and time (e.g. 2026-01-05T10:00).")
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def _cursor(params: QueryDict, name: str) -> int | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise FilterError(f"The {name!r} page cursor {raw!r} is not an event number.")
    return int(raw)


def event_filter(params: QueryDict) -> EventFilter:
    """Read the log's filters from a query string; raise FilterError naming a malformed one."""
    obj = (params.get("object") or "").strip()
    object_type, _, object_id = obj.partition(":")
    return EventFilter(
        line=(params.get("line") or "").strip(),
        actor=(params.get("actor") or "").strip(),
        action=(params.get("action") or "").strip(),
        object_type=object_type.strip(),
        object_id=object_id.strip(),
        start=when(params, "from"),
        end=when(params, "to"),
    )


@dataclass(frozen=True)
class EventRow:
    """One line of the log."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    object: str
    line: str
    reason: str
    decision_id: int | None  # the proposal whose decision chain this event belongs to


def _row(e: AuditEvent) -> EventRow:
    return EventRow(
        id=e.id,
        occurred_at=e.occurred_at,
        actor=e.actor_label,
        action=e.action,
        object=f"{e.object_type}:{e.object_id}" if e.object_id else e.object_type,
        line=e.line_key,
        reason=e.reason if len(e.reason) <= 120 else e.reason[:119] + "…",
        decision_id=int(e.object_id) if e.object_type == PROPOSAL and e.object_id.isdigit() else None,
    )


def log_context(params: QueryDict) -> dict[str, Any]:
    """Return the log page's context: the filters, a page of events newest first and the cursors either side."""
    context: dict[str, Any] = {
        "filters": {k: params.get(k, "") for k in ("line", "actor", "action", "object", "from", "to")}
    }
    try:
        where = event_filter(params)
        page = audit_events_page(
            where=where, before=_cursor(params, "before"), after=_cursor(params, "after"), size=PAGE_SIZE
        )
    except FilterError as exc:
        return context | {"error": str(exc), "rows": [], "older": None, "newer": None}
    query = params.copy()
    for key in ("before", "after"):
        query.pop(key, None)
    return context | {
        "rows": [_row(e) for e in page.events],
        "older": page.older_than,
        "newer": page.newer_than,
        "query": query.urlencode(),
    }


@dataclass(frozen=True)
class DiffRow:
    """One field of an event's before → after: added, removed, changed or unchanged."""

    field: str
    before: str
    after: str
    change: str  # "added", "removed", "changed", "same"


_ABSENT = object()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested objects into dotted field names (lists stay whole values)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(value)": value} if value is not None or prefix else {}


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def event_diff(before: Any, after: Any) -> list[DiffRow]:
    """Return an event's before → after, field by field, in field order."""
    old, new = _flat(before), _flat(after)
    rows = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name, _ABSENT), new.get(name, _ABSENT)
        change = "added" if a is _ABSENT else "removed" if b is _ABSENT else "same" if a == b else "changed"
        rows.append(DiffRow(name, _shown(a), _shown(b), change))
    return rows


def event_context(*, event_id: int) -> dict[str, Any]:
    """Return one event's page context: its fields, hashes, the before → after diff; raises DoesNotExist."""
    event = audit_event_get(event_id=event_id)
    return {
        "event": event,
        "row": _row(event),
        "diff": event_diff(event.before, event.after),
    }


def decision_context(*, recommendation_id: int) -> tuple[DecisionChain, dict[str, Any]]:
    """Return a proposal's decision chain and its page context; raises Recommendation.DoesNotExist."""
    rec = recommendation_by_id(pk=recommendation_id)
    chain = decision_chain(rec=rec)
    return chain, {"rec": rec, "decision": chain}
