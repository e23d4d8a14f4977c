"""The one ingest service behind every telemetry path (history files, the HTTP batch API, the OPC UA collector).

Every path turns its input into a RawBatch and calls `samples_ingest` (or `history_import`, which feeds a file's
chunks through the same code in one transaction). Each batch is classified in numpy (unknown tag and impossible
timestamp: rejected; text, NaN, inf: bad quality with a reason; outside the physical range: flagged) and encoded as
a binary COPY stream. Two ways in, same result:
- the batch overlaps stored data (a replay, late data): COPY into a temporary staging table, then
  `INSERT … ON CONFLICT (tag_id, ts) DO NOTHING … RETURNING` into the partitioned samples table, so a replay adds
  nothing, with the rollups of exactly the rows added merged in the same statement;
- no tag of the batch has a stored sample between its first and last timestamp (live data, a new history file: the
  usual case): COPY straight into the samples table, rollup deltas computed in numpy and merged. This costs half
  of the path above. Should a concurrent writer store one of the keys meanwhile, the COPY fails on the primary
  key, its savepoint is rolled back and the batch takes the first way.
Nothing is committed per row or per chunk: the caller's transaction (or ours) holds it all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from twinops.audit.services import audit_record
from twinops.core import locks
from twinops.core.actors import Actor, ActorLike
from twinops.core.attempts import worker_died_message
from twinops.lines.models import Line
from twinops.lines.selectors import line_tags
from twinops.telemetry import conf, store, tasks
from twinops.telemetry.batch import (
    MAX_REJECTIONS,
    HistoryFileError,
    ImportResult,
    RawBatch,
    Rejection,
    datetime_to_us,
    us_to_datetime,
)
from twinops.telemetry.files import history_reader_open
from twinops.telemetry.models import HistoryImportJob, Quality

__all__ = [
    "FutureTimestampError",
    "HistoryFileError",
    "ImportResult",
    "RawBatch",
    "Rejection",
    "history_import",
    "history_import_enqueue",
    "history_import_job_run",
    "rollups_rebuild",
    "samples_ingest",
]

log = logging.getLogger(__name__)

TS_MIN_US = -2_208_988_800_000_000  # 1900-01-01: older timestamps are typos, not plant history
TS_MAX_US = 7_258_118_400_000_000  # 2200-01-01


class FutureTimestampError(ValueError):
    """A batch holds samples dated ahead of the server clock by more than the margin; nothing of it was stored."""

    def __init__(self, message: str, problems: list[Rejection]) -> None:
        super().__init__(message)
        self.problems = problems


class _Ingest:
    """Ingests batches for one line in the caller's transaction and adds up their results.

    A sample dated more than `conf.future_margin_s` ahead of now is not stored (a wrong plant clock or a forged
    value would otherwise win over the real one, since the first value stored for a time stamp stays): it is
    reported, or with `refuse_future` the whole batch is refused with FutureTimestampError.
    """

    def __init__(self, line: Line, *, refuse_future: bool = False) -> None:
        tags = list(
            line_tags(line=line, include_inactive=True).values_list("name", "id", "physical_low", "physical_high")
        )
        self.line = line
        self.tags = {name: (tag_id, low, high) for name, tag_id, low, high in tags}
        self.counts = dict.fromkeys(("received", "inserted", "duplicate", "bad", "out_of_range", "rejected"), 0)
        self.report: list[Rejection] = []
        self.report_total = 0
        self.margin_s = conf.future_margin_s()
        self.future_us = datetime_to_us(timezone.now()) + int(self.margin_s * 1e6)  # latest timestamp accepted
        self.refuse_future = refuse_future

    def add(self, batch: RawBatch) -> None:
        """Classify, stage and store one batch."""
        n = len(batch)
        self.counts["received"] += n + batch.rejected_samples
        self.counts["rejected"] += batch.rejected_samples
        entries = list(batch.rejections)
        if n:
            entries += self._store(batch)
        entries.sort(key=lambda r: (r.row, r.column))
        self.report_total += len(entries)
        self.report.extend(entries[: max(0, MAX_REJECTIONS - len(self.report))])

    def _store(self, batch: RawBatch) -> list[Rejection]:
        n = len(batch)
        info = [self.tags.get(name, (-1, np.nan, np.nan)) for name in batch.names]
        tag_id = np.asarray([i[0] for i in info], np.int64)[batch.tag]
        low = np.asarray([i[1] for i in info], np.float64)[batch.tag]
        high = np.asarray([i[2] for i in info], np.float64)[batch.tag]
        entries: list[Rejection] = []

        # --- rejected: unknown tag, impossible timestamp ---------------------------------------------------------
        unknown = tag_id < 0
        future = (batch.ts_us > self.future_us) & (batch.ts_us < TS_MAX_US)
        ts_bad = (batch.ts_us < TS_MIN_US) | (batch.ts_us >= TS_MAX_US) | future
        if self.refuse_future and future.any():
            problems = [
                Rejection(int(batch.row[i]), batch.names[batch.tag[i]], self._ahead(batch.ts_us[i]))
                for i in np.nonzero(future)[0][:MAX_REJECTIONS]
            ]
            raise FutureTimestampError(
                f"{int(np.count_nonzero(future))} sample(s) dated more than {self.margin_s:g} s ahead of the server "
                f"clock (first: row {problems[0].row}, tag {problems[0].column!r}); nothing was stored",
                problems,
            )
        for i in np.nonzero(unknown | ts_bad)[0][:MAX_REJECTIONS]:
            name = batch.names[batch.tag[i]]
            if unknown[i]:
                why = f"not stored: unknown tag {name!r} (not a tag of line {self.line.key!r})"
            elif future[i]:
                why = f"not stored: {self._ahead(batch.ts_us[i])}"
            else:
                why = "not stored: timestamp outside 1900-2200"
            entries.append(Rejection(int(batch.row[i]), name, why))
        self.counts["rejected"] += int(np.count_nonzero(unknown | ts_bad))

        # --- quality: text and non-finite values are bad, numbers outside the physical range are flagged ------------
        texts = [""]  # reason texts of this batch; code 0 = no reason
        quality = np.zeros(n, np.int16)
        code = np.zeros(n, np.int32)
        is_text = np.zeros(n, bool)
        if batch.text_at.size:
            uniq, inverse = np.unique(np.asarray(batch.text, dtype=object).astype(str), return_inverse=True)
            codes = np.arange(len(texts), len(texts) + len(uniq), dtype=np.int32)
            texts += [str(u) for u in uniq]
            is_text[batch.text_at] = True
            quality[batch.text_at] = Quality.BAD
            code[batch.text_at] = codes[inverse]
        value = batch.value
        for mask, reason, grade in (
            (np.isnan(value) & ~is_text, "NaN", Quality.BAD),
            (np.isposinf(value), "inf", Quality.BAD),
            (np.isneginf(value), "-inf", Quality.BAD),
            (np.isfinite(value) & (value < low), "below physical range", Quality.OUT_OF_RANGE),
            (np.isfinite(value) & (value > high), "above physical range", Quality.OUT_OF_RANGE),
        ):
            if mask.any():
                quality[mask], code[mask] = grade, len(texts)
                texts.append(reason)

        keep = np.nonzero(~(unknown | ts_bad))[0]
        keep = keep[np.lexsort((batch.ts_us[keep], tag_id[keep]))]  # index order: B-tree inserts stay local
        flagged = keep[quality[keep] != Quality.GOOD]
        for i in flagged[:MAX_REJECTIONS]:
            name, reason = batch.names[batch.tag[i]], texts[code[i]]
            if quality[i] == Quality.BAD:
                why = f"stored as bad quality: {reason}"
            else:
                why = f"stored, flagged out of range: {value[i]:g} is {reason} [{low[i]:g}, {high[i]:g}]"
            entries.append(Rejection(int(batch.row[i]), name, why))
        self.counts["bad"] += int(np.count_nonzero(quality[keep] == Quality.BAD))
        self.counts["out_of_range"] += int(np.count_nonzero(quality[keep] == Quality.OUT_OF_RANGE))
        if not keep.size:
            return entries

        # --- store ------------------------------------------------------------------------------------------------
        ids = store.reason_ids(texts[1:])
        tid, ts = tag_id[keep], batch.ts_us[keep]
        repeat = np.zeros(keep.size, bool)  # the same (tag, ts) twice in the batch: the first one counts
        repeat[1:] = (tid[1:] == tid[:-1]) & (ts[1:] == ts[:-1])
        rows = keep[~repeat]
        tid, ts, val, q = tag_id[rows], batch.ts_us[rows], value[rows], quality[rows]
        reason_id = np.asarray([0] + [ids[t] for t in texts[1:]], np.int32)[code[rows]]
        store.partitions_ensure(ts)
        inserted = None
        if not store.ranges_hold_samples(tag_id=tid, ts_us=ts):  # new data (the usual case): COPY straight in
            try:
                with transaction.atomic():  # a savepoint: a concurrent writer may have stored a key meanwhile
                    inserted = store.copy_new(tag_id=tid, ts_us=ts, value=val, quality=q, reason_id=reason_id)
                    store.rollups_merge(tag_id=tid, ts_us=ts, value=val, quality=q)
            except psycopg.errors.UniqueViolation:
                inserted = None
        if inserted is None:  # overlaps stored data (replay, late data): stage, then skip existing keys
            store.stage(store.copy_buffer(tag_id=tid, ts_us=ts, value=val, quality=q, reason_id=reason_id))
            inserted = store.insert_staged()
        self.counts["inserted"] += inserted
        self.counts["duplicate"] += int(keep.size) - inserted
        return entries

    def _ahead(self, ts_us: np.integer) -> str:
        when = us_to_datetime(int(ts_us))
        ahead_s = (when - datetime.now(UTC)).total_seconds()
        return (
            f"timestamp {when.isoformat()} is {ahead_s:.0f} s ahead of the server clock "
            f"(more than TWINOPS_INGEST_FUTURE_MARGIN_S = {self.margin_s:g} s)"
        )

    def result(self) -> ImportResult:
        """Return the added-up result."""
        c = self.counts
        return ImportResult(
            samples_received=c["received"],
            samples_inserted=c["inserted"],
            samples_duplicate=c["duplicate"],
            samples_bad_quality=c["bad"],
            samples_out_of_range=c["out_of_range"],
            rejections=list(self.report),
            samples_rejected=c["rejected"],
            rejections_total=self.report_total,
        )


@contextmanager
def _partitions_only_if_committed() -> Iterator[None]:
    """Drop again the partitions an ingest's side connection added when the ingest fails and rolls back.

    Where the ingest is the outermost transaction, at once; inside a caller's transaction (whose outcome it cannot
    see), at the next outermost ingest on the same thread.
    """
    if connection.in_atomic_block:
        yield
        return
    # Left over from an ingest inside a caller's transaction on this thread, which has ended: kept if it committed
    # (its partitions hold its rows), dropped if it rolled back.
    store.partitions_drop_empty(store.partitions_created_take())
    try:
        yield
    except BaseException:
        store.partitions_drop_empty(store.partitions_created_take())
        raise
    store.partitions_created_take()


def samples_ingest(
    *,
    line: Line,
    batch: RawBatch | Iterable[RawBatch],
    source: str,
    actor: ActorLike,
    refuse_future: bool = False,
) -> ImportResult:
    """Store a batch (or a body's batches, chunk by chunk) for a line in one transaction (the caller's, if any).

    Replays add nothing. `source` ("api", "opcua", "file", …) is for logs. Batches are routine data, not auditor
    events: no audit event is written per batch (history imports write one). A sample dated ahead of the clock by
    more than the margin is reported and not stored; with `refuse_future`, FutureTimestampError stores nothing.
    """
    with _partitions_only_if_committed(), transaction.atomic():
        ingest = _Ingest(line, refuse_future=refuse_future)
        for part in [batch] if isinstance(batch, RawBatch) else batch:
            ingest.add(part)
        result = ingest.result()
    log.debug(
        "ingested %s samples from %s for %s by %s: %s new",
        result.samples_received,
        source,
        line.key,
        Actor.of(actor),
        result.samples_inserted,
    )
    return result


def history_import(
    *, line: Line, path: Path, filename: str, actor: ActorLike, on_progress: Callable[[int, int], None] | None = None
) -> ImportResult:
    """Import a history file (CSV or Parquet; wide = timestamp + a column per tag, or long = timestamp, tag, value).

    Runs in one transaction (the caller's when inside one), with one `history.imported` audit event. Raises
    HistoryFileError, storing nothing, when the file is structurally unusable; bad rows and values are reported.
    """
    tag_names = set(line_tags(line=line, include_inactive=True).values_list("name", flat=True))
    reader = history_reader_open(path=Path(path), filename=filename, tag_names=tag_names, line_key=line.key)
    with _partitions_only_if_committed(), transaction.atomic():
        ingest = _Ingest(line)
        if on_progress:
            on_progress(0, reader.rows_total)
        for batch in reader.batches():
            ingest.add(batch)
            if on_progress:
                on_progress(min(reader.rows_done, reader.rows_total), reader.rows_total)
        result = ingest.result()
        audit_record(
            actor=actor,
            action="history.imported",
            obj=line,
            reason=f"history file {filename}",
            after={
                "filename": filename,
                "sha256": reader.sha256,
                "format": reader.kind,
                "rows": reader.rows_total,
                "samples_received": result.samples_received,
                "samples_inserted": result.samples_inserted,
                "samples_duplicate": result.samples_duplicate,
                "samples_rejected": result.samples_rejected,
                "samples_bad_quality": result.samples_bad_quality,
                "samples_out_of_range": result.samples_out_of_range,
            },
        )
    return result


def rollups_rebuild(*, line: Line, start: Any, end: Any) -> None:
    """Recompute a line's minute and hour rollups over [start, end) from the raw samples (a repair tool)."""
    with transaction.atomic():
        store.rollups_rebuild(
            tag_ids=list(line_tags(line=line, include_inactive=True).values_list("id", flat=True)), start=start, end=end
        )


# --- import jobs (the web upload path) ------------------------------------------------------------------------------
def history_import_enqueue(*, line: Line, path: Path | str, filename: str, actor: ActorLike) -> HistoryImportJob:
    """Record an import job for an uploaded file and queue it for the ingest worker once the transaction commits."""
    now = timezone.now()
    job = HistoryImportJob.objects.create(
        line=line, path=str(path), filename=filename, created_by=Actor.of(actor).user, created_at=now, sent_at=now
    )
    transaction.on_commit(lambda: tasks.history_import_send(job.pk))
    return job


def history_import_jobs_resend(*, now: datetime | None = None) -> list[int]:
    """Send again the import jobs whose message was lost or whose worker died; return their ids.

    Lost: queued longer than TWINOPS_RESEND_QUEUED_AFTER_S. Died: running while no session holds the job's advisory
    lock (a worker killed with its whole pool, `kill -9`, leaves its message unacknowledged in Redis until the
    visibility timeout, hours later). Each job's `sent_at` moves forward under a row lock, so two runs at once send
    each job once; a job whose first message does arrive later runs once all the same (its claim is conditional).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=conf.resend_queued_after_s())
    orphaned = _import_jobs_orphaned()
    with transaction.atomic():
        ids = list(
            HistoryImportJob.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=HistoryImportJob.Status.QUEUED)
                & (Q(sent_at__lt=cutoff) | Q(sent_at__isnull=True, created_at__lt=cutoff))
                | Q(status=HistoryImportJob.Status.RUNNING, pk__in=orphaned)
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        HistoryImportJob.objects.filter(pk__in=ids).update(sent_at=now)
        for job_id in ids:
            transaction.on_commit(lambda job_id=job_id: tasks.history_import_send(job_id))
    return ids


def _import_jobs_orphaned() -> list[int]:
    """Return the running import jobs whose worker is gone: no session holds their advisory lock."""
    running = list(HistoryImportJob.objects.filter(status=HistoryImportJob.Status.RUNNING).values_list("pk", flat=True))
    if not running:
        return []
    held = locks.held_ids(locks.TELEMETRY_IMPORT_JOB)
    return [job_id for job_id in running if job_id not in held]


def history_import_job_run(*, job_id: int) -> str:
    """Run a queued import job once; return what happened ("done", "failed", "busy", "skipped").

    A job is claimed with a session advisory lock (released if the worker dies, so a re-delivered task takes it
    over) and a conditional UPDATE (a finished job is never redone). Progress goes through a side connection, so the
    web page sees it while the import's own transaction is still open.
    """
    with psycopg.connect(**store._side_params(), autocommit=True) as side:
        locked = side.execute("SELECT pg_try_advisory_lock(%s, %s)", [locks.TELEMETRY_IMPORT_JOB, job_id]).fetchone()
        if not (locked and locked[0]):
            return "busy"
        limit = conf.import_max_attempts()
        claimed = side.execute(
            "UPDATE telemetry_historyimportjob SET status = 'running', attempts = attempts + 1, started_at = now(), "
            "rows_done = 0, progress = 0, error = '' "
            "WHERE id = %s AND status IN ('queued', 'running') AND attempts < %s RETURNING id",
            [job_id, limit],
        ).fetchone()
        if claimed is None:
            # Holding the lock, a job still 'running' is one whose worker died: N deaths, and it is not tried again.
            exhausted = side.execute(
                "UPDATE telemetry_historyimportjob SET status = 'failed', finished_at = now(), error = %s "
                "WHERE id = %s AND status IN ('queued', 'running') RETURNING id",
                [worker_died_message(limit), job_id],
            ).fetchone()
            if exhausted:
                _job_file_drop(job_id)
            return "failed" if exhausted else "skipped"
        job = HistoryImportJob.objects.select_related("line", "created_by").get(pk=job_id)

        def progress(done: int, total: int) -> None:
            side.execute(
                "UPDATE telemetry_historyimportjob SET rows_done = %s, rows_total = %s, progress = %s WHERE id = %s",
                [done, total, 100.0 * done / total if total else 0.0, job_id],
            )

        outcome = _job_import(job, progress)
        # Done or failed, the job is over. A worker that dies (or is stopped) never gets here, and the re-delivered
        # task needs the file.
        _job_file_drop(job_id)
        return outcome


def _job_import(job: HistoryImportJob, progress: Callable[[int, int], None]) -> str:
    try:
        with _partitions_only_if_committed(), transaction.atomic():
            result = history_import(
                line=job.line, path=Path(job.path), filename=job.filename, actor=job.created_by, on_progress=progress
            )
            HistoryImportJob.objects.filter(pk=job.pk).update(
                status=HistoryImportJob.Status.DONE,
                progress=100.0,
                result=result.as_json(),
                rejected=result.rejections_total,
                finished_at=timezone.now(),
            )
        return "done"
    except HistoryFileError as e:
        problems = [{"row": p.row, "column": p.column, "reason": p.reason} for p in e.problems]
        _job_failed(job.pk, error=str(e), result={"problems": problems}, rejected=len(problems))
    except Exception as e:  # the job row must say why; the worker log has the traceback
        log.exception("history import job %s failed", job.pk)
        _job_failed(job.pk, error=f"{type(e).__name__}: {e}", result=None, rejected=0)
    return "failed"


def _job_file_drop(job_id: int) -> None:
    """Delete a finished job's uploaded file: the samples are stored (or the report says why not); it is not kept."""
    path = HistoryImportJob.objects.filter(pk=job_id).values_list("path", flat=True).first()
    if path:
        Path(path).unlink(missing_ok=True)


def _job_failed(job_id: int, *, error: str, result: dict[str, Any] | None, rejected: int) -> None:
    HistoryImportJob.objects.filter(pk=job_id).update(
        status=HistoryImportJob.Status.FAILED, error=error, result=result, rejected=rejected, finished_at=timezone.now()
    )
