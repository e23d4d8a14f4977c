"""API tokens of machine clients (historian bridges, scripts); only the SHA-256 of the secret is stored."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class ApiToken(models.Model):
    """A machine client's credential: only the SHA-256 of the secret is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)  # shown to people to tell tokens apart
    secret_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # What it may write: the keys of these lines, or every line (site-wide, also lines onboarded later).
    lines = ArrayField(models.CharField(max_length=63), default=list, blank=True)
    all_lines = models.BooleanField(default=False)

    class Meta:
        db_table = "core_apitoken"  # made by the core app before accounts existed; the table stayed where it was

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def may_write(self, line_key: str) -> bool:
        """Tell whether this token may write the line with this key."""
        return self.all_lines or line_key in self.lines

    def scope(self) -> str:
        """Describe the lines this token may write, for people."""
        return "all lines" if self.all_lines else ", ".join(self.lines) or "no line"
