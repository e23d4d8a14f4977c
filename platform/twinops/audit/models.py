"""The append-only, hash-chained audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One state change that matters to an auditor; the database refuses UPDATE and DELETE on this table."""

    id = models.BigIntegerField(primary_key=True)  # gapless: 1, 2, 3, … (a gap means a deleted event)
    occurred_at = models.DateTimeField()  # UTC
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=150)  # username or "system:<component>", kept if the user is renamed
    action = models.CharField(max_length=64)  # e.g. "line.created", "spec.version_created", "history.imported"
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    reason = models.TextField(blank=True)
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)
    prev_sha256 = models.CharField(max_length=64)
    sha256 = models.CharField(max_length=64)
    # Hash scheme 2: `canonical` is the canonical JSON of the fields above (audit/canonical.py), and sha256 covers
    # exactly that text; the columns are its queryable copy and must match it. Scheme 1 (events written before it):
    # sha256 covers the columns as read back, and `canonical` is empty.
    scheme = models.PositiveSmallIntegerField(default=1, db_default=1)
    canonical = models.TextField(default="", db_default="")
    # The line an event concerns (its key), for the auditor's line filter; hashed (in `canonical` as "line") when set.
    # Events written before it was added have "" and are found by object only.
    line_key = models.CharField(max_length=100, blank=True, default="", db_default="")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["occurred_at"]),
            # the auditor's filters page newest first by id (keyset): each filter column with id behind it
            models.Index(fields=["line_key", "id"], name="audit_line_id_idx"),
            models.Index(fields=["action", "id"], name="audit_action_id_idx"),
            models.Index(fields=["actor_label", "id"], name="audit_actor_id_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} {self.object_type}:{self.object_id} by {self.actor_label}"
