"""The modeling app: a registry of trained twins per line, the training jobs that make them, the twin page."""

from __future__ import annotations

from django.apps import AppConfig

REQUEUE_EVERY_S = 60.0  # how often beat looks for training jobs whose worker died


class ModelingConfig(AppConfig):
    name = "twinops.modeling"
    label = "modeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from twinops.config.celery import app

        # A new dict, not an in-place update: Celery's conf may hand back the settings module's own dict.
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "modeling.requeue_stale_jobs": {
                "task": "modeling.requeue_stale_jobs",
                "schedule": REQUEUE_EVERY_S,
                "options": {"queue": "default"},
            },
        }
