"""The recommendations app: periodic MPC proposals per line, withheld when the data or the twin cannot be trusted."""

from __future__ import annotations

from django.apps import AppConfig

EXPIRE_EVERY_S = 60.0  # how often beat marks old pending recommendations expired


class RecommendationsConfig(AppConfig):
    name = "twinops.recommendations"
    label = "recommendations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from twinops.config.celery import app
        from twinops.recommendations import conf

        # A new dict, not an in-place update: Celery's conf may hand back the settings module's own dict.
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "recommendations.recommend_all": {
                "task": "recommendations.recommend_all",
                "schedule": conf.every_s(),
                "options": {"queue": "optimize"},
            },
            "recommendations.expire": {
                "task": "recommendations.expire",
                "schedule": EXPIRE_EVERY_S,
                "options": {"queue": "optimize"},
            },
        }
