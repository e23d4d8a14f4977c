"""Releases: an approved proposal's MV trajectory written to the PLC one step per sample period, every write kept."""

from __future__ import annotations

from django.db import models

from twinops.lines.models import Line
from twinops.recommendations.models import Recommendation


class Release(models.Model):
    """The release of one approved proposal to its line's PLC."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"  # steps are being written
        FINISHED = "finished", "finished"  # every step written and read back
        STOPPED = "stopped", "stopped"  # by an engineer, by a newer proposal, or a re-check failed: setpoints held
        FAILED = "failed", "failed"  # the PLC refused, changed or lost a write: setpoints held, alarm raised

    recommendation = models.OneToOneField(Recommendation, on_delete=models.PROTECT, related_name="release")
    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="releases")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)  # why it stopped or failed, with the numbers
    steps = models.PositiveIntegerField()  # steps in the approved MV trajectory
    steps_done = models.PositiveIntegerField(default=0)  # steps written and read back
    last_written_at = models.DateTimeField(null=True, blank=True)  # when the PLC accepted the latest step
    ended_by_label = models.CharField(max_length=150, blank=True)  # "system:release-agent" or the engineer
    alarm = models.TextField(blank=True)  # shown on the line's pages until a later release starts

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # one running release per line: a newer approved proposal stops the older release before it starts
            models.UniqueConstraint(
                fields=["line"], condition=models.Q(status="running"), name="one_running_release_per_line"
            )
        ]

    def __str__(self) -> str:
        return f"release of recommendation {self.recommendation_id} on {self.line.key} ({self.status})"


class ReleaseWrite(models.Model):
    """One MV setpoint of one step: claimed before it is written (at most once), then written and read back."""

    class Status(models.TextChoices):
        CLAIMED = "claimed", "claimed"  # about to be written; after an agent crash, read back before anything else
        VERIFIED = "verified", "verified"  # written and read back equal
        MISMATCH = "mismatch", "mismatch"  # written, but the PLC reads another value (clamped or overwritten)
        REFUSED = "refused", "refused"  # the PLC refused the write (LOCAL mode, fallback, out of range)
        LOST = "lost", "lost"  # the connection was lost: whether the PLC took it is unknown

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="writes")
    step = models.PositiveIntegerField()  # k: the setpoint of step k, due at release start + k sample periods
    tag = models.CharField(max_length=100)
    node_id = models.CharField(max_length=300)
    value = models.FloatField()  # the setpoint written
    claimed_at = models.DateTimeField()
    written_at = models.DateTimeField(null=True, blank=True)  # when the PLC accepted it
    read_back = models.FloatField(null=True, blank=True)  # what the PLC reported afterwards
    read_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.CLAIMED)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["release", "step", "tag"]
        constraints = [models.UniqueConstraint(fields=["release", "step", "tag"], name="one_write_per_step_and_tag")]

    def __str__(self) -> str:
        return f"step {self.step} {self.tag}={self.value:g} ({self.status})"
