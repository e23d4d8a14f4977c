"""A proposal's decision chain: data window → twin → proposal → review → release writes → outcome, each link checked.

Every link is checked against what can be recomputed (hashes of the stored telemetry and checkpoint bytes) and
against the hash-chained audit log (what was recorded when it happened). A link is verified (True), failed (False),
or not reached yet (None: no review, release or outcome so far).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from twinops.audit.models import AuditEvent
from twinops.audit.selectors import audit_events_about
from twinops.core.jsonable import json_plain
from twinops.modeling.models import TwinVersion
from twinops.modeling.selectors import twin_load, twin_version_get
from twinops.recommendations.models import Recommendation
from twinops.recommendations.selectors import outcome_of, proposal_content_sha256, recent_window
from twinops.releases.selectors import release_of, release_writes
from twins import CheckpointError, Twin

REC = "recommendations.recommendation"


@dataclass(frozen=True)
class Link:
    """One link of the chain: what it holds, whether it checks out, and the audit events that recorded it."""

    key: str  # data_window, twin, proposal, review, release, outcome
    title: str
    verified: bool | None  # None: this step has not happened (yet)
    check: str  # what was checked and found, in one or two sentences
    facts: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # signatures or writes, one dict each
    events: list[int] = field(default_factory=list)  # ids of the audit events about this link


@dataclass(frozen=True)
class DecisionChain:
    """The chain of one proposal."""

    recommendation: int
    line: str
    status: str
    links: list[Link]

    @property
    def verified(self) -> bool:
        """Return whether no link failed (links not reached yet do not count against it)."""
        return all(link.verified is not False for link in self.links)

    def to_json(self) -> dict[str, Any]:
        """Return the chain as plain JSON data."""
        return json_plain(
            {
                "recommendation": self.recommendation,
                "line": self.line,
                "status": self.status,
                "verified": self.verified,
                "links": [link.__dict__ for link in self.links],
            }
        )


def decision_chain(*, rec: Recommendation) -> DecisionChain:
    """Build and check the decision chain of a proposal."""
    version = None if rec.twin_version_id is None else twin_version_get(line=rec.line, version=rec.twin_version.version)
    release = release_of(rec=rec)
    objects = [(REC, str(rec.pk))]
    if version is not None:
        objects.append(("modeling.twinversion", str(version.pk)))
    if release is not None:
        objects.append(("releases.release", str(release.pk)))
    events = audit_events_about(objects=objects)
    twin, twin_link = _twin(version, events)
    links = [
        _data_window(rec, twin),
        twin_link,
        _proposal(rec, events),
        _review(rec, events),
        _release(release, events),
        _outcome(rec, events),
    ]
    return DecisionChain(rec.pk, rec.line.key, rec.status, links)


def _about(events: list[AuditEvent], object_type: str, object_id: Any, *actions: str) -> list[AuditEvent]:
    return [
        e
        for e in events
        if e.object_type == object_type and e.object_id == str(object_id) and (not actions or e.action in actions)
    ]


def _data_window(rec: Recommendation, twin: Twin | None) -> Link:
    facts = {"start": rec.window_start, "end": rec.window_end, "inputs_sha256": rec.inputs_sha256}
    title = "Data window"
    if not rec.inputs_sha256 or rec.window_end is None:
        return Link("data_window", title, False, "No data window was recorded for this proposal.", facts)
    if twin is None:
        return Link("data_window", title, False, "The window cannot be re-read: its twin cannot be loaded.", facts)
    window = recent_window(line=rec.line, twin=twin, last=rec.window_end, rows=twin.state_rows)
    again = window.dataset.sha256()
    if again != rec.inputs_sha256:
        text = f"The stored telemetry of this window now hashes to {again}, not to the recorded SHA-256."
        return Link("data_window", title, False, text, facts | {"recomputed_sha256": again})
    return Link("data_window", title, True, "The stored telemetry of this window still hashes to its SHA-256.", facts)


def _twin(version: TwinVersion | None, events: list[AuditEvent]) -> tuple[Twin | None, Link]:
    title = "Twin version"
    if version is None:
        return None, Link("twin", title, False, "No twin version is recorded for this proposal.")
    report = version.report or {}
    facts = {
        "version": version.version,
        "status": version.status,
        "checkpoint_sha256": version.checkpoint_sha256,
        "training_window": {"start": version.data_start, "end": version.data_end, "rows": version.data_rows},
        "data_sha256": version.data_sha256,
        "evaluation": {"promotable": version.promotable, "verdict": report.get("reason", "")},
        "created_by": version.created_by_label,
        "created_at": version.created_at,
    }
    recorded = _about(events, "modeling.twinversion", version.pk, "twin.trained")
    ids = [e.id for e in _about(events, "modeling.twinversion", version.pk)]
    actual = hashlib.sha256(bytes(version.checkpoint or b"")).hexdigest()
    if actual != version.checkpoint_sha256:
        text = f"The stored checkpoint bytes hash to {actual}, not to the registered SHA-256."
        return None, Link("twin", title, False, text, facts, events=ids)
    if not recorded or (recorded[0].after or {}).get("checkpoint_sha256") != actual:
        text = "The checkpoint's SHA-256 is not the one the audit log recorded when the twin was trained."
        return None, Link("twin", title, False, text, facts, events=ids)
    try:
        twin = twin_load(version=version)
    except CheckpointError as exc:
        return None, Link("twin", title, False, f"The checkpoint is refused when loaded: {exc}", facts, events=ids)
    text = f"The stored checkpoint hashes to its SHA-256, loads, and matches audit event #{recorded[0].id}."
    return twin, Link("twin", title, True, text, facts, events=ids)


def _proposal(rec: Recommendation, events: list[AuditEvent]) -> Link:
    result = rec.result or {}
    facts = {
        "status": rec.status,
        "created_at": rec.created_at,
        "created_by": rec.created_by_label,
        "solver_status": rec.solver_status,
        "expected_gain_per_h": rec.expected_gain,
        "inputs": rec.inputs,
        "settings": rec.settings,
        "plan": {"mv_plan": result.get("mv_plan"), "first_move": result.get("first_move")},
        "reason": rec.reason,
    }
    made = _about(events, REC, rec.pk, "recommendation.created", "recommendation.withheld", "recommendation.failed")
    ids = [e.id for e in _about(events, REC, rec.pk)]
    title = "Proposal"
    if not made:
        return Link(
            "proposal", title, False, "The audit log has no record of this proposal being made.", facts, events=ids
        )
    after = made[0].after or {}
    recorded = {
        "inputs_sha256": after.get("inputs_sha256"),
        "twin_version": after.get("twin_version"),
        "expected_gain": after.get("expected_gain"),
    }
    stored = {
        "inputs_sha256": rec.inputs_sha256,
        "twin_version": rec.twin_version.version if rec.twin_version_id else None,
        "expected_gain": rec.expected_gain,
    }
    differ = [k for k in stored if not _same(stored[k], recorded[k])]
    if differ:
        text = f"The stored {', '.join(differ)} differ from audit event #{made[0].id}, which recorded the proposal."
        return Link("proposal", title, False, text, facts, events=ids)
    text = f"Inputs hash, twin version and expected gain match audit event #{made[0].id}."
    return Link("proposal", title, True, text, facts, events=ids)


def _signed_in_log(events: list[AuditEvent]) -> set[tuple[str, str]]:
    """Return the (username, content SHA-256) of every signature the audit log recorded."""
    found: set[tuple[str, str]] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "username" in value and "content_sha256" in value:
                found.add((str(value["username"]), str(value["content_sha256"])))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for e in events:
        if e.action.startswith("proposal."):
            walk(e.after)
    return found


def _review(rec: Recommendation, events: list[AuditEvent]) -> Link:
    logged = _signed_in_log(events)
    rows = []
    for sig in rec.signatures.order_by("signed_at", "id"):
        now = proposal_content_sha256(rec, scale=sig.scale)
        rows.append(
            {
                "username": sig.username,
                "full_name": sig.full_name,
                "meaning": sig.get_meaning_display(),
                "signed_at": sig.signed_at,
                "reason": sig.reason,
                "scale": sig.scale,
                "content_sha256": sig.content_sha256,
                "in_audit_log": (sig.username, sig.content_sha256) in logged,
                "still_matches": now == sig.content_sha256,
            }
        )
    ids = [e.id for e in _about(events, REC, rec.pk) if e.action.startswith("proposal.")]
    title = "Review"
    if not rows:
        return Link("review", title, None, f"Not signed ({rec.get_status_display()}).", rows=rows, events=ids)
    if not all(r["in_audit_log"] for r in rows):
        text = "A signature's content SHA-256 is not the one the audit log recorded when it was signed."
        return Link("review", title, False, text, rows=rows, events=ids)
    if not all(r["still_matches"] for r in rows):
        text = "A signature no longer matches the proposal's content (plan, limits, spec or twin changed since)."
        return Link("review", title, False, text, rows=rows, events=ids)
    text = "Every signature is in the audit log and still matches the proposal's content."
    return Link("review", title, True, text, rows=rows, events=ids)


def _release(release: Any, events: list[AuditEvent]) -> Link:
    title = "Release writes"
    if release is None:
        return Link("release", title, None, "Not released to the plant.")
    logged: dict[tuple[int, str], dict[str, Any]] = {}
    for e in _about(events, "releases.release", release.pk, "release.write"):
        for w in (e.after or {}).get("writes") or []:
            logged[(int((e.after or {}).get("step", -1)), str(w.get("tag")))] = w
    rows = []
    for w in release_writes(release=release):
        entry = logged.get((w.step, w.tag))
        rows.append(
            {
                "step": w.step,
                "tag": w.tag,
                "value": w.value,
                "read_back": w.read_back,
                "status": w.status,
                "written_at": w.written_at,
                "read_back_matches": w.read_back is not None and _same(w.value, w.read_back),
                "in_audit_log": entry is not None
                and _same(entry.get("value"), w.value)
                and _same(entry.get("read_back"), w.read_back),
            }
        )
    facts = {
        "status": release.status,
        "started_at": release.started_at,
        "ended_at": release.ended_at,
        "steps": release.steps,
        "steps_done": release.steps_done,
        "reason": release.reason,
        "alarm": release.alarm,
    }
    ids = [e.id for e in _about(events, "releases.release", release.pk)]
    if not all(r["in_audit_log"] for r in rows):
        text = "A write's value or read-back differs from what the audit log recorded (or was never recorded)."
        return Link("release", title, False, text, facts, rows, ids)
    if not all(r["read_back_matches"] for r in rows):
        return Link("release", title, False, "A write was not read back equal to the value written.", facts, rows, ids)
    text = f"{len(rows)} writes, each read back equal and recorded in the audit log."
    return Link("release", title, True, text, facts, rows, ids)


def _outcome(rec: Recommendation, events: list[AuditEvent]) -> Link:
    title = "Outcome"
    outcome = outcome_of(rec=rec)
    if outcome is None:
        return Link("outcome", title, None, "No outcome recorded yet.")
    facts = {
        "recorded_at": outcome.recorded_at,
        "compared_with": outcome.get_compared_with_display(),
        "coverage": outcome.coverage,
        "measured_share": outcome.measured_share,
        "predicted_gain_per_h": outcome.predicted_gain_per_h,
        "realized_gain_per_h": outcome.realized_gain_per_h,
        "note": outcome.note,
    }
    recorded = _about(events, REC, rec.pk, "recommendation.outcome_recorded")
    ids = [e.id for e in recorded]
    if not recorded:
        return Link("outcome", title, False, "The audit log has no record of this outcome.", facts, events=ids)
    after = recorded[0].after or {}
    keys = ("coverage", "measured_share", "realized_gain_per_h")
    differ = [k for k in keys if not _same(after.get(k), getattr(outcome, k))]
    if differ:
        text = f"The stored {', '.join(differ)} differ from audit event #{recorded[0].id}."
        return Link("outcome", title, False, text, facts, events=ids)
    return Link("outcome", title, True, f"Matches audit event #{recorded[0].id}.", facts, events=ids)


def _same(a: Any, b: Any) -> bool:
    """Return whether two recorded values agree (numbers to 1e-9 relative: JSON and float columns round-trip)."""
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b
