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
    """Return an import job with its progress and result, for the progress page and partial."""
    from twinops.telemetry.models import HistoryImportJob

    job = get_object_or_404(HistoryImportJob.objects.select_related("line"), pk=job_id)
    finished = job.status in (HistoryImportJob.Status.DONE, HistoryImportJob.Status.FAILED)
    percent = 100 if job.status == HistoryImportJob.Status.DONE else int(min(99.0, max(0.0, job.progress)))
    return {"job": job, "percent": percent, "finished": finished, "result": job.result or {}}
