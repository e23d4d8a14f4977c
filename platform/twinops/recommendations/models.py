"""Recommendations: one MPC proposal (or the reason there is none) per line and time slot."""

from __future__ import annotations

from typing import Any

from django.db import models

from twinops.lines.models import Line, SpecVersion
from twinops.modeling.models import TwinVersion


class Recommendation(models.Model):
    """Setpoint moves proposed for a line from its promoted twin, with the data and settings that produced them."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"  # a proposal awaiting review
        WITHHELD = "withheld", "withheld"  # not computed or not shown: the data or the twin cannot be trusted now
        FAILED = "failed", "failed"  # the twin does not fit the spec, or the solver gave no proposal
        EXPIRED = "expired", "expired"  # a proposal that was neither approved nor rejected in time, or superseded

    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="recommendations")
    slot = models.DateTimeField()  # start of the time slot (TWINOPS_RECOMMEND_EVERY_S) this one belongs to
    status = models.CharField(max_length=8, choices=Status.choices)
    reason = models.TextField(blank=True)  # why withheld, failed or expired, with the numbers
    created_at = models.DateTimeField()
    created_by_label = models.CharField(max_length=150)  # "system:beat", "system:cli" or a username
    expires_at = models.DateTimeField()  # a pending proposal is void after this
    twin_version = models.ForeignKey(TwinVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    spec_version = models.ForeignKey(SpecVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    window_start = models.DateTimeField(null=True, blank=True)  # the data window encoded into the twin's state
    window_end = models.DateTimeField(null=True, blank=True)
    inputs_sha256 = models.CharField(max_length=64, blank=True)  # of that window (values, masks, names, period)
    inputs = models.JSONField(default=dict, blank=True)  # current CVs/MVs/DVs, latest samples, OOD score, spread
    settings = models.JSONField(default=dict, blank=True)  # optimizer settings and the trust thresholds used
    result = models.JSONField(null=True, blank=True)  # MpcResult.to_dict() when the solver ran (plan only if optimal)
    solver_status = models.CharField(max_length=16, blank=True)  # MpcResult.status when the solver ran
    expected_gain = models.FloatField(null=True, blank=True)  # MpcResult.objective_gain, currency per hour

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["line", "slot"], name="one_recommendation_per_line_slot")]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"recommendation {self.pk} of {self.line.key} ({self.status})"

    @property
    def has_proposal(self) -> bool:
        """Return whether this recommendation carries planned moves."""
        return bool(self.result and self.result.get("status") == "optimal" and self.result.get("mv_plan"))

    @property
    def plan(self) -> dict[str, Any]:
        """Return the stored MpcResult, or an empty dict."""
        return self.result or {}
