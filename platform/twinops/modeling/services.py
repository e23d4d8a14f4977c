"""Write the twin registry: request and run training jobs, register versions, promote and roll back (audited)."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from twinops.audit.services import audit_record
from twinops.core.actors import Actor, ActorLike
from twinops.core.attempts import worker_died_message
from twinops.core.jsonable import json_plain
from twinops.lines.models import Line
from twinops.lines.services import line_lock
from twinops.modeling import conf, tasks
from twinops.modeling.datasets import LineRecord, line_record_load
from twinops.modeling.models import TrainingJob, TwinVersion
from twinops.modeling.plots import forecast_preview
from twinops.modeling.selectors import checkpoint_bytes, twin_load, twin_versions, twins_promoted
from twinops.telemetry.selectors import data_end
from twins import (
    CheckpointError,
    Incumbent,
    InsufficientDataError,
    TrainingOutcome,
    TwinConfig,
    split_rows,
    train_and_evaluate,
)

log = logging.getLogger(__name__)
Status = TrainingJob.Status
ProgressHook = Callable[[TrainingJob], None]  # called after each epoch with the job row as written


class PromotionError(ValueError):
    """A promotion or rollback was refused; the message says why."""


class ClaimLostError(RuntimeError):
    """This attempt no longer owns the job: it was presumed dead and another worker took it over."""


def twin_config(overrides: dict[str, Any] | None = None) -> TwinConfig:
    """Return the default twin config with overrides applied; raise ValueError on unknown fields or bad values."""
    return TwinConfig.from_dict({**TwinConfig().to_dict(), **(overrides or {})})


def refusal_message(exc: InsufficientDataError) -> str:
    """Return why the data cannot support a twin, followed by who can act on it."""
    text = str(exc)
    if "no MV excitation" in text:
        who = (
            "Engineers can run step tests that move these MVs (one at a time, each held until the CVs settle); "
            "the data team can then train again on a window that includes them."
        )
    else:
        who = "The data team can import a longer or cleaner history (or choose another window) and train again."
    return f"{text}. {who}"


# --- training jobs ----------------------------------------------------------------------------------------------
def training_job_create(
    *,
    line: Line,
    actor: ActorLike,
    start: datetime | None = None,
    end: datetime | None = None,
    config_overrides: dict[str, Any] | None = None,
    enqueue: bool = True,
    reason: str = "",
) -> TrainingJob:
    """Queue a training job for a line; the train queue's worker picks it up once this transaction commits."""
    twin_config(config_overrides)  # refuse a bad config now, not in the worker
    if start and end and start >= end:
        raise ValueError(f"the window start {start:%Y-%m-%d %H:%M} must be before its end {end:%Y-%m-%d %H:%M}")
    who = Actor.of(actor)
    with transaction.atomic():
        line_lock(line_id=line.pk)  # one active job per line, even on a double click
        busy = TrainingJob.objects.filter(line=line, status__in=TrainingJob.UNFINISHED).first()
        if busy is not None:
            raise ValueError(f"training job {busy.pk} of {line.key} is already {busy.status}; wait for it to finish")
        job = TrainingJob.objects.create(
            line=line,
            requested_by=who.user,
            requested_by_label=who.label,
            requested_at=timezone.now(),
            sent_at=timezone.now() if enqueue else None,
            window_start=start,
            window_end=end,
            config_overrides=dict(config_overrides or {}),
        )
        audit_record(
            actor=who,
            action="twin.training_requested",
            obj=job,
            reason=reason,
            after={"line": line.key, "start": start, "end": end, "config_overrides": job.config_overrides},
        )
        if enqueue:
            transaction.on_commit(lambda: training_job_enqueue(job_id=job.pk))
    return job


def training_job_enqueue(*, job_id: int) -> None:
    """Send a job to the train queue (safe to repeat: only one worker can claim it)."""
    tasks.train_twin.delay(job_id)


def training_job_claim(*, job_id: int, worker: str = "") -> TrainingJob | None:
    """Claim a queued job, or a running one whose worker went silent (attempts + 1); None if it is not ours to run."""
    now = timezone.now()
    stale = now - timedelta(seconds=conf.stale_after_s())
    claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale)
    claimed = TrainingJob.objects.filter(claimable, pk=job_id, attempts__lt=conf.max_attempts()).update(
        status=Status.RUNNING,
        claim=uuid.uuid4(),
        attempts=F("attempts") + 1,
        worker=worker[:200],
        heartbeat_at=now,
        started_at=now,
        epoch=0,
        last_losses={},
        phase="loading",
        message="",
    )
    if not claimed:
        _fail_exhausted(job_ids=[job_id])
        return None
    return TrainingJob.objects.select_related("line").get(pk=job_id)


def _fail_exhausted(*, job_ids: list[int] | None = None) -> int:
    """Fail silent running jobs that have used all their attempts, rather than run them yet again."""
    stale = timezone.now() - timedelta(seconds=conf.stale_after_s())
    jobs = TrainingJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale, attempts__gte=conf.max_attempts())
    if job_ids is not None:
        jobs = jobs.filter(pk__in=job_ids)
    return jobs.update(
        status=Status.FAILED,
        finished_at=timezone.now(),
        phase="",
        message=worker_died_message(conf.max_attempts()),
    )


def training_job_progress(*, job: TrainingJob, epoch: int, total: int, losses: dict[str, float]) -> None:
    """Write an epoch's progress and a heartbeat in its own short transaction; raise ClaimLostError if superseded."""
    values = {
        "epoch": epoch,
        "total_epochs": total,
        "heartbeat_at": timezone.now(),
        "phase": "training",
        "last_losses": json_plain({k: float(v) for k, v in losses.items()}),
    }
    _owned_update(job, **values)
    for key, value in values.items():
        setattr(job, key, value)


def _owned_update(job: TrainingJob, **values: Any) -> None:
    if not TrainingJob.objects.filter(pk=job.pk, claim=job.claim, status=Status.RUNNING).update(**values):
        raise ClaimLostError(f"training job {job.pk} was taken over by another worker or cancelled")


def _finish(job: TrainingJob, status: object, message: str) -> None:
    TrainingJob.objects.filter(pk=job.pk, claim=job.claim, status=Status.RUNNING).update(
        status=status, message=message, finished_at=timezone.now(), phase=""
    )
    job.refresh_from_db()


class _Heartbeat(threading.Thread):
    """Beat the job row while a long phase (loading, evaluation) runs between epochs; dies with the process."""

    def __init__(self, job: TrainingJob) -> None:
        super().__init__(name=f"heartbeat-job-{job.pk}", daemon=True)
        self.job_id, self.claim, self.stopped = job.pk, job.claim, threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(conf.heartbeat_every_s()):
                TrainingJob.objects.filter(pk=self.job_id, claim=self.claim, status=Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:  # a lost database must not kill training; the next epoch's write will say so
            log.exception("heartbeat of training job %s failed", self.job_id)
        finally:
            connection.close()


def _incumbent(*, line: Line, record: LineRecord) -> Incumbent | None:
    """Return the line's promoted twin, for a new version to be scored against, or None when it has none.

    The new version is judged on its test segment (its window's newest rows); the promoted twin is compared there
    only if that segment lies after the promoted twin's training block, so neither twin was trained on it.
    """
    promoted = twins_promoted().filter(line=line).first()
    if promoted is None:
        return None
    label = f"promoted v{promoted.version}"
    period = timedelta(seconds=record.dataset.sample_period_s)
    test_from = record.timestamps[split_rows(len(record.timestamps))[1]]
    trained_to = promoted.data_start + split_rows(promoted.data_rows)[0] * period
    if test_from < trained_to:  # e.g. a window that starts earlier: its test rows are in the promoted twin's training
        return Incumbent(
            label,
            None,
            f"this version's test segment starts {test_from:%Y-%m-%d %H:%M} UTC, before {label}'s training data ends "
            f"({trained_to:%Y-%m-%d %H:%M} UTC), so it would be scored on data it was trained on",
        )
    try:
        return Incumbent(label, twin_load(version=promoted))
    except CheckpointError as exc:  # the new version is still trained and judged; its verdict says why not compared
        return Incumbent(label, None, str(exc))


def training_job_run(
    *, job_id: int, device: str | None = None, on_progress: ProgressHook | None = None
) -> TrainingJob | None:
    """Claim a job and run it: load the window, train and evaluate, register one version; None if not claimed."""
    job = training_job_claim(job_id=job_id, worker=f"{socket.gethostname()}:{os.getpid()}")
    if job is None:
        return None
    beat = _Heartbeat(job)
    beat.start()
    try:
        record = line_record_load(line=job.line, start=job.window_start, end=job.window_end)

        def progress(epoch: int, total: int, losses: dict[str, float]) -> None:
            training_job_progress(job=job, epoch=epoch, total=total, losses=losses)
            if on_progress is not None:
                on_progress(job)

        def phase(name: str) -> None:  # the steps after the epochs take minutes too: say which one runs
            _owned_update(job, phase=name, heartbeat_at=timezone.now())
            job.phase = name
            if on_progress is not None:
                on_progress(job)

        phase("training")
        outcome = train_and_evaluate(
            record.dataset,
            twin_config(job.config_overrides),
            on_progress=progress,
            device=device,
            on_phase=phase,
            incumbent=_incumbent(line=job.line, record=record),
        )
        phase("registering")
        twin_version_register(job=job, record=record, outcome=outcome)
    except InsufficientDataError as exc:
        _finish(job, Status.REFUSED, refusal_message(exc))
    except ClaimLostError:
        log.warning("training job %s: this attempt was superseded; its result is discarded", job_id)
        return None
    except Exception as exc:
        log.exception("training job %s failed", job_id)
        _finish(job, Status.FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        beat.stopped.set()
        beat.join()
    job.refresh_from_db()
    return job


RETRAIN_ACTOR = "system:retrain"  # who asks for scheduled retrains, on the jobs list and in the audit log


def training_jobs_schedule(*, now: datetime | None = None) -> list[TrainingJob]:
    """Queue a retrain of every line in production that is due, and return the jobs queued.

    A line is due when it has a promoted twin, no job queued or running, none requested in the last
    TWINOPS_RETRAIN_EVERY_H hours, and at least that many hours of new data since its newest version's window
    ends. The job repeats the promoted version's recipe (window start, config) on the data up to now; the version
    it registers is a candidate like any other: the data team promotes it, or not, on its verdict.
    """
    every_h = conf.retrain_every_h()
    if not every_h:
        return []
    now = now or timezone.now()
    every = timedelta(hours=every_h)
    queued = []
    for promoted in twins_promoted():
        line = promoted.line
        # the newest version (the promoted one or a later candidate), without its checkpoint: this runs every 10 min
        latest = twin_versions(line=line).first() or promoted
        newest = data_end(line=line)
        if newest is None or newest - latest.data_end < every:
            continue
        with transaction.atomic():
            line_lock(line_id=line.pk)  # a second beat delivery waits here, then finds the job just queued
            jobs = TrainingJob.objects.filter(line=line)
            if jobs.filter(Q(status__in=TrainingJob.UNFINISHED) | Q(requested_at__gt=now - every)).exists():
                continue
            recipe = promoted.job
            queued.append(
                training_job_create(
                    line=line,
                    actor=RETRAIN_ACTOR,
                    start=recipe.window_start if recipe else None,
                    config_overrides=recipe.config_overrides if recipe else None,
                    reason=(
                        f"scheduled retrain: {(newest - latest.data_end) / timedelta(hours=1):.0f} h of new data "
                        f"since v{latest.version}'s window "
                        f"(every {every_h} h, TWINOPS_RETRAIN_EVERY_H); the version it registers waits for promotion"
                    ),
                )
            )
    return queued


def training_jobs_requeue_stale() -> list[int]:
    """Re-enqueue running jobs whose worker died and queued ones whose message was lost; return the ids sent.

    Running jobs that used all their attempts fail instead. A queued job is sent again once it has waited
    TWINOPS_RESEND_QUEUED_AFTER_S since it was last sent; `sent_at` moves forward under a row lock, so two runs at
    once send it once, and a duplicate message does nothing (the claim is conditional).
    """
    _fail_exhausted()
    now = timezone.now()
    stale = now - timedelta(seconds=conf.stale_after_s())
    ids = list(TrainingJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale).values_list("pk", flat=True))
    cutoff = now - timedelta(seconds=conf.resend_queued_after_s())
    with transaction.atomic():
        lost = list(
            TrainingJob.objects.select_for_update(skip_locked=True)
            .filter(Q(sent_at__lt=cutoff) | Q(sent_at__isnull=True, requested_at__lt=cutoff), status=Status.QUEUED)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        TrainingJob.objects.filter(pk__in=lost).update(sent_at=now)
    for job_id in [*ids, *lost]:
        training_job_enqueue(job_id=job_id)
    return [*ids, *lost]


# --- versions ---------------------------------------------------------------------------------------------------
def twin_version_register(*, job: TrainingJob, record: LineRecord, outcome: TrainingOutcome) -> TwinVersion:
    """Store the trained twin as the line's next version and close the job, in one audited transaction."""
    blob = checkpoint_bytes(outcome.twin)
    report = json_plain(outcome.report.to_dict())
    preview = forecast_preview(outcome, record.timestamps)
    data = record.dataset
    with transaction.atomic():
        locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if locked.claim != job.claim or locked.status != Status.RUNNING:
            raise ClaimLostError(f"training job {job.pk} is no longer owned by this attempt")
        line_lock(line_id=job.line_id)  # serialise version numbers of the line
        number = (TwinVersion.objects.filter(line_id=job.line_id).aggregate(n=Max("version"))["n"] or 0) + 1
        version = TwinVersion.objects.create(
            line_id=job.line_id,
            version=number,
            job=locked,
            config=outcome.twin.config.to_dict(),
            report=report,
            promotable=bool(report["promotable"]),
            cv_names=list(data.cv_names),
            mv_names=list(data.mv_names),
            dv_names=list(data.dv_names),
            data_start=record.timestamps[0],
            data_end=record.timestamps[-1],
            data_rows=len(data),
            data_sha256=data.sha256(),
            checkpoint=blob,
            checkpoint_sha256=hashlib.sha256(blob).hexdigest(),
            preview=preview,
            device=outcome.twin.info.device,
            train_seconds=float(outcome.twin.info.seconds),
            created_by=locked.requested_by,
            created_by_label=locked.requested_by_label,
            created_at=timezone.now(),
        )
        locked.status, locked.finished_at, locked.phase, locked.message = Status.DONE, timezone.now(), "", ""
        locked.save(update_fields=["status", "finished_at", "phase", "message"])
        audit_record(
            actor=locked.requested_by or locked.requested_by_label,
            action="twin.trained",
            obj=version,
            after={
                "line": job.line.key,
                "version": number,
                "job": job.pk,
                "promotable": version.promotable,
                "verdict": report["reason"],
                "data_sha256": version.data_sha256,
                "checkpoint_sha256": version.checkpoint_sha256,
                "device": version.device,
            },
        )
    return version


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise PromotionError("a reason is required: say why the optimizer should use this twin")
    return reason


def _loadable(version: TwinVersion) -> None:
    try:
        twin_load(version=version)
    except CheckpointError as exc:
        raise PromotionError(f"v{version.version} cannot be used: its checkpoint is refused ({exc})") from exc


def twin_promote(*, version: TwinVersion, actor: ActorLike, reason: str) -> TwinVersion:
    """Make a version the line's promoted twin (the optimizer's), retiring the current one; audited."""
    reason = _require_reason(reason)
    with transaction.atomic():
        line_lock(line_id=version.line_id)
        target = TwinVersion.objects.select_for_update().get(pk=version.pk)
        if target.status == TwinVersion.Status.PROMOTED:
            raise PromotionError(f"v{target.version} is already the promoted twin")
        if not target.promotable:
            raise PromotionError(f"v{target.version} is not promotable: {target.report.get('reason', 'no verdict')}")
        _loadable(target)
        current = (
            TwinVersion.objects.select_for_update()
            .filter(line_id=target.line_id, status=TwinVersion.Status.PROMOTED)
            .first()
        )
        if current is not None:
            current.status = TwinVersion.Status.RETIRED
            current.save(update_fields=["status"])
        target.status, target.promoted_at = TwinVersion.Status.PROMOTED, timezone.now()
        target.save(update_fields=["status", "promoted_at"])
        audit_record(
            actor=actor,
            action="twin.promoted",
            obj=target,
            reason=reason,
            before={"promoted_version": current.version if current else None},
            after={"promoted_version": target.version, "verdict": target.report.get("reason", "")},
        )
    return target


def twin_rollback(*, line: Line, actor: ActorLike, reason: str) -> TwinVersion:
    """Withdraw the promoted twin and promote again the one promoted before it; audited. Return that version."""
    reason = _require_reason(reason)
    with transaction.atomic():
        line_lock(line_id=line.pk)
        versions = TwinVersion.objects.select_for_update().filter(line=line)
        current = versions.filter(status=TwinVersion.Status.PROMOTED).first()
        if current is None:
            raise PromotionError(f"{line.key} has no promoted twin to roll back")
        previous = (
            versions.filter(status=TwinVersion.Status.RETIRED, promoted_at__isnull=False)
            .order_by("-promoted_at", "-version")
            .first()
        )
        if previous is None:
            raise PromotionError(
                f"v{current.version} is the only twin of {line.key} ever promoted: nothing to return to"
            )
        _loadable(previous)
        current.status = TwinVersion.Status.ROLLED_BACK
        current.save(update_fields=["status"])
        previous.status, previous.promoted_at = TwinVersion.Status.PROMOTED, timezone.now()
        previous.save(update_fields=["status", "promoted_at"])
        audit_record(
            actor=actor,
            action="twin.rolled_back",
            obj=current,
            reason=reason,
            before={"promoted_version": current.version},
            after={"promoted_version": previous.version},
        )
    return previous
