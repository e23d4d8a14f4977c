"""Celery tasks of the telemetry app: thin wrappers that load ids and call one service.

The services import this module at the top to send its tasks, so a task imports the services in its body.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="telemetry.history_import")
def history_import_task(job_id: int) -> str:
    """Run a history import job (idempotent: a finished job is not redone, a running one not run twice)."""
    from twinops.telemetry import services  # in the body: the services import this module (see above)

    return services.history_import_job_run(job_id=job_id)


def history_import_send(job_id: int) -> None:
    """Queue a history import job (on the ingest queue: CELERY_TASK_ROUTES in settings)."""
    history_import_task.delay(job_id)


@shared_task(name="telemetry.resend_queued_imports")
def resend_queued_imports() -> list[int]:
    """Send again the import jobs whose message was lost (queued longer than TWINOPS_RESEND_QUEUED_AFTER_S)."""
    from twinops.telemetry import services  # in the body: the services import this module (see above)

    return services.history_import_jobs_resend()
