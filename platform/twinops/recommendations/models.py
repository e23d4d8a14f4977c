"""Recommendations: one MPC proposal (or the reason there is none) per line and time slot."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from twinops.lines.models import Line, SpecVersion
from twinops.modeling.models import TwinVersion


class Recommendation(models.Model):
    """Setpoint moves proposed for a line from its promoted twin, with the data and settings that produced them."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"  # a proposal awaiting review (advisory line); may carry one of two signatures
        SHADOW = "shadow", "shadow"  # a proposal on a line in shadow mode: tracked against the plant, never released
        APPROVED = "approved", "approved"  # signed for release (by two engineers where the spec asks for two)
        REJECTED = "rejected", "rejected"  # signed as rejected, with the reason
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
    # What the signatures approved: the MV trajectory to release (scaled down when approved with smaller moves),
    # the CV prediction it was re-checked with, the scale and the SHA-256 of the signed content.
    approved_plan = models.JSONField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)  # when it became approved or rejected
    released_at = models.DateTimeField(null=True, blank=True)  # when its first step reached the PLC (read back)

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


class Signature(models.Model):
    """An engineer's electronic signature on a proposal: who, when, what it means, why, and the exact content signed.

    The signature applies only while the proposal's content (plan, limits, spec version, twin version) still hashes
    to `content_sha256`; the release re-computes the hash before every write.
    """

    class Meaning(models.TextChoices):
        APPROVED = "approved", "approved for release"
        REJECTED = "rejected", "rejected"

    recommendation = models.ForeignKey(Recommendation, on_delete=models.PROTECT, related_name="signatures")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    username = models.CharField(max_length=150)
    full_name = models.CharField(max_length=300)
    meaning = models.CharField(max_length=8, choices=Meaning.choices)
    reason = models.TextField(blank=True)
    signed_at = models.DateTimeField()  # UTC
    scale = models.FloatField(default=1.0)  # 1: the plan as proposed; below 1: approved with smaller moves
    content_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["signed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["recommendation", "user"], name="one_signature_per_engineer_and_proposal")
        ]

    def __str__(self) -> str:
        return f"{self.get_meaning_display()} by {self.username} at {self.signed_at:%Y-%m-%d %H:%M:%S} UTC"


class Outcome(models.Model):
    """What happened after a shadow or released proposal: each CV measured over the horizon against the prediction.

    A released proposal is compared with its plan's prediction; a shadow one (never applied) with the twin's
    prediction for holding the setpoints (`compared_with`), as recommendations/outcomes.py explains.
    """

    class Compared(models.TextChoices):
        PLAN = "plan", "the released plan's prediction"
        HOLD = "hold", "the prediction for holding the setpoints (shadow: the plan was not applied)"

    recommendation = models.OneToOneField(Recommendation, on_delete=models.PROTECT, related_name="outcome")
    recorded_at = models.DateTimeField()
    compared_with = models.CharField(max_length=4, choices=Compared.choices)
    start = models.DateTimeField()  # when step 0 of the compared prediction began (CV k refers to start + (k+1)·period)
    period_s = models.FloatField()
    horizon = models.PositiveIntegerField()
    predicted = models.JSONField()  # {cv: [N]} the compared prediction
    band_lo = models.JSONField()  # {cv: [N]} its band
    band_hi = models.JSONField()
    measured = models.JSONField()  # {cv: [N]} bucket means of good samples; null where none
    error = models.JSONField()  # {cv: [N]} measured - predicted by step ahead; null where not measured
    coverage = models.FloatField(null=True)  # share of measured CV samples inside the band; null: none measured
    coverage_by_cv = models.JSONField()
    measured_share = models.FloatField()  # share of the horizon's CV samples that were measured
    predicted_value_per_h = models.FloatField(null=True)  # economic value of the compared prediction, currency/h
    realized_value_per_h = models.FloatField(null=True)  # the same objective on the measured values
    predicted_gain_per_h = models.FloatField(null=True)  # plan - hold as predicted (released only)
    realized_gain_per_h = models.FloatField(null=True)  # measured - predicted hold (released only)
    mv_deviation = models.JSONField()  # {mv: largest |measured - expected setpoint|}: did the plant do as assumed?
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-start", "-id"]

    def __str__(self) -> str:
        return f"outcome of recommendation {self.recommendation_id} (against {self.compared_with})"


class RecommendationAttempt(models.Model):
    """A worker started computing a line's slot: counted before the work, deleted with the recommendation it stored.

    The worker holds the row's advisory lock (core.locks.RECOMMENDATION_ATTEMPT) while it works, so a row nobody
    holds outlived its worker: a death (kill -9, an out-of-memory kill, a crash in a native solver). Beat sends such a
    slot again at once (the dead worker's message stays unacknowledged in Redis for hours); each start adds one, and
    past TWINOPS_RECOMMEND_MAX_ATTEMPTS, or once the slot has ended, the slot is stored FAILED with the reason instead.
    """

    line = models.ForeignKey(Line, on_delete=models.CASCADE, related_name="+")
    slot = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()  # the latest attempt
    sent_at = models.DateTimeField(null=True, blank=True)  # when beat last sent the slot again after a death

    class Meta:
        constraints = [models.UniqueConstraint(fields=["line", "slot"], name="one_attempt_counter_per_line_slot")]

    def __str__(self) -> str:
        return f"{self.attempts} attempts at {self.line.key} slot {self.slot:%Y-%m-%d %H:%M}"
