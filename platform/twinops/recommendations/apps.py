"""The recommendations app: periodic MPC proposals per line, withheld when the data or the twin cannot be trusted."""

from __future__ import annotations

from django.apps import AppConfig


class RecommendationsConfig(AppConfig):
    name = "twinops.recommendations"
    label = "recommendations"
    default_auto_field = "django.db.models.BigAutoField"
