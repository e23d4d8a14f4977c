"""Write releases: start the newest approved proposal's, claim each step before it is written, record every outcome.

Every change writes its audit event in the same transaction. A step is claimed by inserting its rows under the
(release, step, tag) unique constraint while the release row is locked and still running, so a step is written at
most once even if the agent dies and restarts; a claim never confirmed is settled by reading the PLC back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from twinops.audit.services import audit_record
from twinops.core.actors import Actor, ActorLike
from twinops.core.roles import capability_require
from twinops.lines.models import Line
from twinops.lines.services import line_lock
from twinops.recommendations.models import Recommendation
from twinops.recommendations.services import recommendation_released
from twinops.releases.checks import plan_steps
from twinops.releases.models import Release, ReleaseWrite
from twinops.releases.selectors import approved_unreleased

AGENT = "system:release-agent"
Status: Any = Release.Status  # Any: without django-stubs, mypy reads the members as (value, label) tuples
WriteStatus: Any = ReleaseWrite.Status


@dataclass(frozen=True)
class WriteOutcome:
    """What happened to one MV's write of a step."""

    tag: str
    status: str  # a ReleaseWrite.Status
    read_back: float | None = None
    written_at: datetime | None = None
    read_at: datetime | None = None
    error: str = ""


def release_next(*, line: Line, now: datetime | None = None) -> Release | None:
    """Return the line's running release, first starting the newest approved proposal's (stopping what it supersedes)."""
    now = now or timezone.now()
    with transaction.atomic():
        line_lock(line_id=line.pk)
        running = Release.objects.select_related("recommendation").filter(line=line, status=Status.RUNNING).first()
        waiting = approved_unreleased(line=line)
        if not waiting:
            return running
        newest, older = waiting[0], waiting[1:]
        if running is not None and running.recommendation.decided_at >= newest.decided_at:
            newest, older = running.recommendation, waiting  # approved earlier but decided later: the running wins
        for rec in older:
            _create_ended(
                rec, now=now, reason=f"superseded by proposal {newest.pk} before its release; nothing written"
            )
        if running is not None and running.recommendation_id == newest.pk:
            return running
        if plan_steps(newest) == 0:  # approved without a signed plan: a release of it would wait for ever
            why = f"proposal {newest.pk} is approved but has no signed plan to release; nothing written"
            _create_ended(newest, now=now, reason=why, alarm=why, status=Status.FAILED)
            return running
        if running is not None:
            _end(
                running,
                Status.STOPPED,
                f"superseded by proposal {newest.pk}; setpoints held",
                actor=Actor.of(AGENT),
                now=now,
            )
        release = Release.objects.create(
            recommendation=newest, line=line, status=Status.RUNNING, started_at=now, steps=plan_steps(newest)
        )
        audit_record(
            actor=AGENT,
            action="release.started",
            obj=release,
            at=now,
            after={
                "line": line.key,
                "recommendation": newest.pk,
                "steps": release.steps,
                "content_sha256": (newest.approved_plan or {}).get("content_sha256"),
                "signed_by": [s.username for s in newest.signatures.all()],
            },
        )
    return Release.objects.select_related("recommendation").get(pk=release.pk)


def _create_ended(
    rec: Recommendation, *, now: datetime, reason: str, alarm: str = "", status: str = Status.STOPPED
) -> Release:
    release = Release.objects.create(
        recommendation=rec,
        line_id=rec.line_id,
        status=status,
        started_at=now,
        ended_at=now,
        reason=reason,
        steps=plan_steps(rec),
        ended_by_label=AGENT,
        alarm=alarm,
    )
    audit_record(
        actor=AGENT,
        action=f"release.{status}",
        obj=release,
        reason=reason,
        at=now,
        after={"recommendation": rec.pk, "status": status, "steps_done": 0},
    )
    return release


def _end(release: Release, status: str, reason: str, *, actor: Actor, now: datetime, alarm: str = "") -> bool:
    """End a running release (conditional UPDATE) and audit it; return False if it had ended already."""
    changed = Release.objects.filter(pk=release.pk, status=Status.RUNNING).update(
        status=status, ended_at=now, reason=reason, ended_by_label=actor.label, alarm=alarm
    )
    if changed:
        audit_record(
            actor=actor,
            action=f"release.{status}",
            obj=release,
            reason=reason,
            at=now,
            before={"status": "running"},
            after={"status": status, "steps_done": release.steps_done, "alarm": alarm or None},
        )
    return bool(changed)


def release_halt(*, release: Release, reason: str, alarm: bool = False, now: datetime | None = None) -> bool:
    """Stop a running release as the agent: a re-check failed (stopped) or the PLC misbehaved (failed, with alarm)."""
    now = now or timezone.now()
    with transaction.atomic():
        fresh = Release.objects.select_for_update().get(pk=release.pk)
        status = Status.FAILED if alarm else Status.STOPPED
        return _end(fresh, status, reason, actor=Actor.of(AGENT), now=now, alarm=reason if alarm else "")


def release_stop(*, line: Line, actor: ActorLike, reason: str) -> Release:
    """Stop the line's running release (engineer or admin, with a reason): nothing more is written, setpoints held."""
    actor = Actor.of(actor)
    capability_require(actor=actor, capability="approve_proposal")
    reason = reason.strip()
    if not reason:
        raise ValueError("give a reason for stopping the release")
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(line=line, status=Status.RUNNING).first()
        if release is None:
            raise ValueError(f"no release is running on line {line.key}")
        _end(
            release,
            Status.STOPPED,
            f"stopped by {actor.label}: {reason}; setpoints held",
            actor=actor,
            now=timezone.now(),
        )
    release.refresh_from_db()
    return release


def release_claim(
    *, release: Release, step: int, writes: dict[str, tuple[str, float]], now: datetime | None = None
) -> bool:
    """Claim a step's writes (tag -> (node id, value)) while the release runs; False if it ended or the step is taken."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Release.objects.select_for_update().filter(pk=release.pk, status=Status.RUNNING).exists():
            return False
        try:
            with transaction.atomic():
                ReleaseWrite.objects.bulk_create(
                    ReleaseWrite(release=release, step=step, tag=tag, node_id=node, value=value, claimed_at=now)
                    for tag, (node, value) in writes.items()
                )
        except IntegrityError:
            return False  # claimed before (by this agent before a restart): settled by read-back, never re-written
    return True


def release_write_record(
    *, release: Release, step: int, outcomes: list[WriteOutcome], reason: str = "", now: datetime | None = None
) -> Release:
    """Record a claimed step's outcome with its audit event; a write not verified fails the release with an alarm."""
    now = now or timezone.now()
    with transaction.atomic():
        fresh = Release.objects.select_for_update().get(pk=release.pk)
        rows = {w.tag: w for w in ReleaseWrite.objects.select_for_update().filter(release=fresh, step=step)}
        for o in outcomes:
            row = rows[o.tag]
            row.status, row.read_back, row.written_at, row.read_at, row.error = (
                o.status,
                o.read_back,
                o.written_at,
                o.read_at,
                o.error,
            )
            row.save(update_fields=["status", "read_back", "written_at", "read_at", "error"])
        ok = all(o.status == WriteStatus.VERIFIED for o in outcomes)
        if ok:
            fresh.steps_done = max(fresh.steps_done, step + 1)
            fresh.last_written_at = max((o.written_at or now for o in outcomes), default=now)
            fresh.save(update_fields=["steps_done", "last_written_at"])
            if step == 0:  # the plan reached the plant: the outcome's horizon starts here
                recommendation_released(
                    recommendation_id=fresh.recommendation_id,
                    at=min((o.written_at or now for o in outcomes), default=now),
                )
        audit_record(
            actor=AGENT,
            action="release.write",
            obj=fresh,
            reason=reason,
            at=now,
            after={
                "recommendation": fresh.recommendation_id,
                "step": step,
                "writes": [
                    {
                        "tag": rows[o.tag].tag,
                        "node": rows[o.tag].node_id,
                        "value": rows[o.tag].value,
                        "read_back": o.read_back,
                        "claimed_at": rows[o.tag].claimed_at,
                        "written_at": o.written_at,
                        "read_at": o.read_at,
                        "status": o.status,
                        "error": o.error or None,
                    }
                    for o in outcomes
                ],
            },
        )
        if fresh.status == Status.RUNNING:
            if not ok:
                detail = "; ".join(
                    f"{rows[o.tag].tag} written {rows[o.tag].value:g}, read {o.read_back if o.read_back is not None else 'nothing'}"
                    f" ({o.status}{': ' + o.error if o.error else ''})"
                    for o in outcomes
                    if o.status != WriteStatus.VERIFIED
                )
                _end(
                    fresh,
                    Status.FAILED,
                    f"step {step}: {detail}; setpoints held",
                    actor=Actor.of(AGENT),
                    now=now,
                    alarm=f"release of proposal {fresh.recommendation_id} failed at step {step}: {detail}{(' — ' + reason) if reason else ''}",
                )
            elif fresh.steps_done >= fresh.steps:
                _end(
                    fresh,
                    Status.FINISHED,
                    f"all {fresh.steps} steps written and read back",
                    actor=Actor.of(AGENT),
                    now=now,
                )
    fresh.refresh_from_db()
    return fresh


def release_unreachable(*, line: Line, error: str, now: datetime | None = None) -> list[Release]:
    """Fail the line's running release and its newest waiting proposal's: the PLC cannot be reached; nothing written."""
    now = now or timezone.now()
    ended = []
    with transaction.atomic():
        line_lock(line_id=line.pk)
        running = Release.objects.select_for_update().filter(line=line, status=Status.RUNNING).first()
        message = f"connection to the PLC lost or refused: {error}"
        if running is not None:
            alarm = f"release of proposal {running.recommendation_id} stopped at step {running.steps_done}: {message}"
            _end(running, Status.FAILED, f"{message}; setpoints held", actor=Actor.of(AGENT), now=now, alarm=alarm)
            ended.append(running)
        waiting = approved_unreleased(line=line)
        if waiting:
            rec = waiting[0]
            alarm = f"proposal {rec.pk} not released: {message}"
            ended.append(
                _create_ended(rec, now=now, reason=f"{message}; nothing written", alarm=alarm, status=Status.FAILED)
            )
    return ended
