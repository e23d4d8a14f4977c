"""The twin registry: training jobs and the versions they register, per line."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from twinops.lines.models import Line


class TrainingJob(models.Model):
    """A request to train a twin of a line on a window of its history; one job registers at most one version."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        REFUSED = "refused", "refused (not enough usable data)"

    UNFINISHED = (Status.QUEUED, Status.RUNNING)  # a worker has it or will take it; one per line at a time

    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="training_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    requested_by_label = models.CharField(max_length=150)  # username or "system:cli", kept if the user goes
    requested_at = models.DateTimeField()
    window_start = models.DateTimeField(null=True, blank=True)  # None: from the first sample
    window_end = models.DateTimeField(null=True, blank=True)  # None: up to the request time
    config_overrides = models.JSONField(default=dict, blank=True)  # TwinConfig fields that differ from the default
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)  # times a worker claimed it (a dead worker's re-run adds one)
    claim = models.UUIDField(null=True, blank=True)  # token of the current attempt; a stale attempt's writes miss
    worker = models.CharField(max_length=200, blank=True)  # host/pid of the current attempt
    sent_at = models.DateTimeField(null=True, blank=True)  # its task was last sent (a lost message is sent again)
    epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    last_losses = models.JSONField(default=dict, blank=True)  # the latest epoch's losses (loss, cv, latent, …)
    phase = models.CharField(max_length=32, blank=True)  # loading, training, the steps after it, registering
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)  # the refusal (what data is missing) or the error

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"training job {self.pk} of {self.line.key} ({self.status})"

    @property
    def active(self) -> bool:
        return self.status in self.UNFINISHED

    @property
    def percent(self) -> int:
        return int(100 * self.epoch / self.total_epochs) if self.total_epochs else 0

    @property
    def phase_percent(self) -> int | None:
        """Percent done of a step after the epochs that counts its work ("scoring the band 512/5440"), else None."""
        done, slash, total = self.phase.rpartition(" ")[2].partition("/")
        if not slash or not done.isdigit() or not total.isdigit() or int(total) == 0:
            return None
        return min(100, int(100 * int(done) / int(total)))


class TwinVersion(models.Model):
    """One trained twin of a line: checkpoint bytes, evaluation report, data window; promoted ones feed the optimizer."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "candidate"  # trained, never promoted
        PROMOTED = "promoted", "promoted"  # the one the optimizer uses (at most one per line)
        RETIRED = "retired", "retired"  # was promoted, replaced by a newer promotion
        ROLLED_BACK = "rolled_back", "rolled back"  # was promoted, withdrawn by a rollback

    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="twin_versions")
    version = models.PositiveIntegerField()  # 1, 2, 3, … per line
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CANDIDATE)
    job = models.OneToOneField(TrainingJob, null=True, on_delete=models.PROTECT, related_name="version")
    config = models.JSONField()  # TwinConfig.to_dict()
    report = models.JSONField()  # twins EvaluationReport.to_dict()
    promotable = models.BooleanField()  # report["promotable"]: the twin's free run beats the linear baseline
    cv_names = models.JSONField(default=list)
    mv_names = models.JSONField(default=list)
    dv_names = models.JSONField(default=list)
    data_start = models.DateTimeField()  # first and last sample of the training window
    data_end = models.DateTimeField()
    data_rows = models.PositiveIntegerField()
    data_sha256 = models.CharField(max_length=64)  # of the whole window (values, masks, names, period)
    checkpoint = models.BinaryField()  # twins.save_checkpoint bytes: shared by every node through PostgreSQL
    checkpoint_sha256 = models.CharField(max_length=64)
    preview = models.JSONField(default=dict)  # test-segment forecasts at a few horizons, for the twin page charts
    device = models.CharField(max_length=32)  # "cpu" or "cuda"
    train_seconds = models.FloatField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_by_label = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    promoted_at = models.DateTimeField(null=True, blank=True)  # the latest promotion of this version

    class Meta:
        ordering = ["line", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["line", "version"], name="twin_version_unique"),
            models.UniqueConstraint(fields=["line"], condition=Q(status="promoted"), name="one_promoted_twin_per_line"),
        ]

    def __str__(self) -> str:
        return f"{self.line.key} twin v{self.version} ({self.status})"
