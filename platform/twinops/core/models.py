"""Capabilities (permission holder) and API tokens for machine clients."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Capability(models.Model):
    """Holds the capability permissions; no rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_plant", "See lines, telemetry, twins and proposals"),
            ("onboard_line", "Onboard production lines and change their specs"),
            ("import_telemetry", "Import telemetry history and send batches to the ingest API"),
            ("train_twin", "Train, promote and roll back twins"),
            ("approve_proposal", "Approve or reject setpoint proposals"),
            ("view_audit", "Read the audit log"),
            ("export_audit", "Export the audit log"),
            ("manage_users", "Manage users, roles and API tokens"),
        ]


class ApiToken(models.Model):
    """A machine client's credential: only the SHA-256 of the secret is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)  # shown to people to tell tokens apart
    secret_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
