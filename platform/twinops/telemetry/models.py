"""Telemetry: raw samples (partitioned by time), per-minute and per-hour rollups, bad-value reasons, import jobs.

The samples table is created by SQL in the migration (declarative partitioning is beyond Django's schema editor);
`Sample` maps it so that the ORM can read it and so that test database flushes truncate it. Django never alters it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from twinops.lines.models import Line, Tag


class Quality(models.IntegerChoices):
    """What a stored sample is worth; only GOOD samples feed averages, training windows and min/max."""

    GOOD = 0, "good"
    OUT_OF_RANGE = 1, "out_of_range"  # a number outside the tag's physical range: stored, flagged, not used
    BAD = 2, "bad"  # no usable number (historian string, NaN, inf, OPC UA status not Good): value is NULL


class Reason(models.Model):
    """A distinct reason text for a bad or flagged sample ('Bad', 'Scan Timeout', 'NaN', 'above physical range')."""

    id = models.AutoField(primary_key=True)
    text = models.CharField(max_length=200, unique=True)

    class Meta:
        db_table = "telemetry_reason"

    def __str__(self) -> str:
        return self.text


class Sample(models.Model):
    """One value of one tag at one instant (UTC); the primary key (tag, ts) makes replays conflict and add nothing.

    No database foreign key to lines_tag: a per-row referential check halves ingest throughput. Integrity holds
    anyway: the ingest service resolves tag ids from lines_tag in the same transaction, and every stored sample has
    a minute rollup row whose foreign key keeps its tag from being deleted.
    """

    pk = models.CompositePrimaryKey("tag_id", "ts")
    tag = models.ForeignKey(Tag, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    ts = models.DateTimeField()
    value = models.FloatField(null=True)  # NULL when quality is BAD
    quality = models.SmallIntegerField(choices=Quality.choices)
    reason = models.ForeignKey(Reason, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")

    class Meta:
        db_table = "telemetry_sample"

    def __str__(self) -> str:
        return f"{self.tag_id}@{self.ts.isoformat()}={self.value}"


class _Rollup(models.Model):
    """Aggregates of one tag over one bucket; min/avg/max over GOOD samples only (NULL when there are none)."""

    tag = models.ForeignKey(Tag, on_delete=models.DO_NOTHING, related_name="+")
    bucket = models.DateTimeField()  # start of the bucket, UTC
    n_good = models.IntegerField()
    n_bad = models.IntegerField()
    n_out_of_range = models.IntegerField()
    min_value = models.FloatField(null=True)
    avg_value = models.FloatField(null=True)
    max_value = models.FloatField(null=True)

    class Meta:
        abstract = True


class RollupMinute(_Rollup):
    """Per-minute rollup, maintained by the ingest service in the same transaction as the samples."""

    pk = models.CompositePrimaryKey("tag_id", "bucket")

    class Meta:
        db_table = "telemetry_rollup_minute"


class RollupHour(_Rollup):
    """Per-hour rollup, maintained like the per-minute one (week and longer charts read it)."""

    pk = models.CompositePrimaryKey("tag_id", "bucket")

    class Meta:
        db_table = "telemetry_rollup_hour"


class HistoryImportJob(models.Model):
    """A history file waiting for, or done by, the ingest worker; the web page polls its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    UNFINISHED = (Status.QUEUED, Status.RUNNING)  # the ingest worker has it or will take it

    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="history_import_jobs")
    path = models.CharField(max_length=1000)  # the uploaded file on the server
    filename = models.CharField(max_length=300)  # as uploaded, for reports
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)  # percent, 0-100
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(null=True, blank=True)
    rejected = models.IntegerField(default=0)  # entries in the rejection report
    attempts = models.IntegerField(default=0)  # times a worker claimed it (a dead worker's re-delivery adds one)
    sent_at = models.DateTimeField(null=True, blank=True)  # its task was last sent (a lost message is sent again)
    result = models.JSONField(null=True, blank=True)  # ImportResult as JSON, rejections included
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import #{self.pk} {self.filename} ({self.status})"
