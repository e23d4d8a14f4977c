"""Production lines, their versioned specs, and their tags (the current spec's view)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Line(models.Model):
    """A production line onboarded from a spec file."""

    class Mode(models.TextChoices):
        OFF = "off", "off: no proposals"
        SHADOW = "shadow", "shadow: proposals tracked, never released (commissioning)"
        ADVISORY = "advisory", "advisory: proposals released after an engineer's signed approval"

    key = models.SlugField(max_length=63, unique=True)  # the spec's line.id; used in URLs and the CLI
    name = models.CharField(max_length=200)
    site = models.CharField(max_length=200, blank=True)
    area = models.CharField(max_length=200, blank=True)
    sample_period_s = models.FloatField()
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    # A new line starts in shadow: its proposals are measured against the plant before anyone may release one.
    # There is no autonomous mode.
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.SHADOW)
    mode_changed_at = models.DateTimeField(null=True, blank=True)
    mode_changed_by_label = models.CharField(max_length=150, blank=True)
    mode_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    @property
    def current_spec(self) -> SpecVersion | None:
        return self.spec_versions.order_by("-version").first()


class SpecVersion(models.Model):
    """One immutable version of a line's spec document; a change of limits makes a new one."""

    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="spec_versions")
    version = models.PositiveIntegerField()
    document = models.JSONField()  # the validated spec, as parsed
    source_text = models.TextField()  # the file as uploaded, for auditors
    filename = models.CharField(max_length=255, blank=True)  # name of the uploaded file, as the user gave it
    sha256 = models.CharField(max_length=64)  # of source_text
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_by_label = models.CharField(max_length=150, blank=True)  # username, or e.g. "cli:root" for a shell user
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["line", "version"]
        constraints = [models.UniqueConstraint(fields=["line", "version"], name="spec_version_unique")]

    def __str__(self) -> str:
        return f"{self.line.key} v{self.version}"


class Tag(models.Model):
    """A measured or manipulated variable of a line, as the line's current spec describes it."""

    class Role(models.TextChoices):
        CV = "CV", "controlled variable"
        MV = "MV", "manipulated variable (setpoint)"
        DV = "DV", "measured disturbance"

    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="tags")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=2, choices=Role.choices)
    unit = models.CharField(max_length=32)
    description = models.CharField(max_length=300, blank=True)
    physical_low = models.FloatField()  # outside [physical_low, physical_high] a value is a bad measurement
    physical_high = models.FloatField()
    limit_low = models.FloatField(null=True, blank=True)  # operating limits (CV soft, MV hard)
    limit_high = models.FloatField(null=True, blank=True)
    safety_low = models.FloatField(null=True, blank=True)  # CV hard safety limits
    safety_high = models.FloatField(null=True, blank=True)
    max_move_per_step = models.FloatField(null=True, blank=True)  # MV only, engineering units per sample period
    ramp_rate_per_min = models.FloatField(null=True, blank=True)  # MV only, engineering units per minute
    opcua_node = models.CharField(max_length=300, blank=True)
    active = models.BooleanField(default=True)  # False once a newer spec version drops the tag (history is kept)

    class Meta:
        ordering = ["line", "role", "name"]
        constraints = [models.UniqueConstraint(fields=["line", "name"], name="tag_name_unique_per_line")]

    def __str__(self) -> str:
        return f"{self.line.key}.{self.name}"
