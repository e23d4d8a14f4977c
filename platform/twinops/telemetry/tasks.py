"""Celery tasks of the telemetry app: thin wrappers that load ids and call one service."""

from __future__ import annotations

from celery import shared_task

QUEUE = "ingest"  # given at send time: Celery deprecates the task-level `queue` attribute


@shared_task(name="telemetry.history_import")
def history_import_task(job_id: int) -> str:
    """Run a history import job (idempotent: a finished job is not redone, a running one not run twice)."""
    from twinops.telemetry.services import history_import_job_run

    return history_import_job_run(job_id=job_id)


def history_import_send(job_id: int) -> None:
    """Queue a history import job on the ingest queue."""
    history_import_task.apply_async(args=[job_id], queue=QUEUE)
