"""The modeling app: a registry of trained twins per line, the training jobs that make them, the twin page."""

from __future__ import annotations

from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "twinops.modeling"
    label = "modeling"
    default_auto_field = "django.db.models.BigAutoField"
