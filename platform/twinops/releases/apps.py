"""The releases app: approved proposals written to the line's PLC step by step, each write re-checked and read back."""

from __future__ import annotations

from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "twinops.releases"
    label = "releases"
    default_auto_field = "django.db.models.BigAutoField"
