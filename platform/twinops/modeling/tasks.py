"""Celery tasks of the modeling app: thin wrappers that load ids and call one service.

The services import this module at the top to send its tasks, so a task imports the services in its body.

Queues come from CELERY_TASK_ROUTES in settings (one table for every app; Celery 5 deprecates the task-level
`queue=` attribute in favour of routes).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="modeling.train_twin", acks_late=True, reject_on_worker_lost=True)
def train_twin(job_id: int) -> str:
    """Run a training job; a no-op when another attempt owns it or it is already finished (idempotent)."""
    from twinops.modeling import services  # in the body: the services import this module (see above)

    job = services.training_job_run(job_id=job_id)
    return job.status if job is not None else "not claimed"


@shared_task(name="modeling.requeue_stale_jobs")
def requeue_stale_jobs() -> list[int]:
    """Re-enqueue training jobs whose worker died (no heartbeat in time) or whose message was lost (queued too long)."""
    from twinops.modeling import services  # in the body: the services import this module (see above)

    return services.training_jobs_requeue_stale()


@shared_task(name="modeling.retrain_due")
def retrain_due() -> list[int]:
    """Queue a retrain of every line whose promoted twin has a period's worth of new data (TWINOPS_RETRAIN_EVERY_H)."""
    from twinops.modeling import services  # in the body: the services import this module (see above)

    return [job.pk for job in services.training_jobs_schedule()]
