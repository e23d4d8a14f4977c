"""Celery tasks of the telemetry app: thin wrappers that load ids and call one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="telemetry.history_import", queue="ingest")
def history_import_task(job_id: int) -> str:
    """Run a history import job (idempotent: a finished job is not redone, a running one not run twice)."""
    from twinops.telemetry.services import history_import_job_run

    return history_import_job_run(job_id=job_id)
