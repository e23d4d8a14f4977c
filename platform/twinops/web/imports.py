"""Onboarding from the web: create the line, hand its history file to the telemetry import job, follow the job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.shortcuts import get_object_or_404

from twinops.lines.models import Line
from twinops.lines.services import line_onboard
from twinops.web import drafts


@dataclass(frozen=True)
class Onboarded:
    """What the confirm step made: the line, and the history import job when a file came with it."""

    line: Line
    tag_count: int
    job_id: int | None


def onboard_with_history(
    *, text: str, filename: str, actor: Any, history: UploadedFile | None, reason: str
) -> Onboarded:
    """Onboard a line from a previewed spec and queue its history file (if any) for the ingest worker, atomically."""
    path = drafts.upload_store(upload=history) if history is not None else None
    try:
        with transaction.atomic():  # the line and its import job exist together or not at all
            result = line_onboard(text=text, filename=filename, actor=actor, reason=reason)
            job = None
            if path is not None and history is not None:
                from twinops.telemetry.services import history_import_enqueue  # imported where used, see pages.py

                job = history_import_enqueue(line=result.line, path=path, filename=history.name, actor=actor)
    except BaseException:
        if path is not None:
            path.unlink(missing_ok=True)
        raise
    tag_count = sum(result.tags_by_role.values())
    return Onboarded(line=result.line, tag_count=tag_count, job_id=job.pk if job is not None else None)


def import_context(*, job_id: int) -> dict[str, Any]:
    """Return an import job with its progress as a percentage, for the progress page and partial."""
    from twinops.telemetry.models import HistoryImportJob

    job = get_object_or_404(HistoryImportJob.objects.select_related("line"), pk=job_id)
    return {"job": job, "percent": job_percent(job), "finished": job_finished(job)}


def job_percent(job: Any) -> int:
    """Return how far a job has got, 0-100."""
    total, done = getattr(job, "rows_total", None), getattr(job, "rows_done", 0) or 0
    if job_finished(job):
        return 100
    if not total:
        return 0
    return min(99, int(100 * done / total))


def job_finished(job: Any) -> bool:
    """Tell whether a job has stopped, successfully or not (the page stops polling then)."""
    return job.status in {"succeeded", "failed"}
