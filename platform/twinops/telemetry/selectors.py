"""Reads of telemetry: aligned training windows (numpy + masks), chart series, data quality, newest samples."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection, models

from twinops.lines.models import Line, Tag
from twinops.lines.selectors import line_tags
from twinops.telemetry import conf
from twinops.telemetry.batch import Rejection, datetime_to_us, us_to_datetime
from twinops.telemetry.models import HistoryImportJob, Quality
from twinops.telemetry.store import raw_connection

FRESHNESS_LOOKBACK_S = 86_400.0  # how far back the newest sample of a tag is looked for (older: "no sample in 24 h")
CHART_BUCKETS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)
TOP_REASONS = 3


@dataclass(frozen=True)
class TrainingWindow:
    """A line's tags resampled on a regular grid: bucket averages of good samples, and where there were any."""

    timestamps: list[datetime]  # (T,) UTC start of each bucket
    ts_us: np.ndarray  # (T,) int64 microseconds since the Unix epoch, the same instants
    values: np.ndarray  # (T, n_tags) float64, NaN where the mask is False
    mask: np.ndarray  # (T, n_tags) bool, True = at least one good sample in the bucket
    tags: tuple[str, ...]  # (n_tags,) names
    roles: tuple[str, ...]  # (n_tags,) "CV" | "MV" | "DV"
    period_s: float  # bucket width


@dataclass(frozen=True)
class ChartSeries:
    """One tag's series for a chart: raw samples for short ranges, rollup buckets (min/avg/max) otherwise."""

    tag: str
    resolution: str  # "raw", "1 min", "5 min", "1 h", …
    bucket_s: int  # 0 for raw samples
    source: str  # "raw", "rollup_minute" or "rollup_hour": the table read
    times_us: np.ndarray  # (n,) int64 microseconds since the Unix epoch: sample times, or bucket starts
    values: list[float | None]  # good raw values, or the bucket average of good samples; None where none
    mins: list[float | None] | None  # per-bucket min / max of good samples; None for raw
    maxs: list[float | None] | None
    bad: list[int]  # samples not good (bad or out of range) per point

    @property
    def times(self) -> list[datetime]:
        """Return the points' times as UTC datetimes."""
        return [us_to_datetime(int(t)) for t in self.times_us]


@dataclass(frozen=True)
class TagQuality:
    """Data quality of one tag over a period."""

    tag: str
    role: str
    good: int
    bad: int
    out_of_range: int
    first_time: datetime | None
    last_time: datetime | None
    top_reasons: list[tuple[str, int]]  # most frequent reasons of bad and out-of-range samples, with counts


def _rows(sql: str, params: Sequence[object] | dict[str, object]) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


_COPY_OUT_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("len_tag_id", ">i4"),
        ("tag_id", ">i8"),
        ("len_bucket", ">i4"),
        ("bucket", ">i8"),
        ("len_avg", ">i4"),
        ("avg", ">f8"),
    ]
)


def _copy_out(sql: str, params: dict[str, object]) -> np.ndarray:
    """Run a query of (bigint, bigint, float8 NOT NULL) rows as a binary COPY and view it as a numpy array."""
    with raw_connection().cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
        data = b"".join(bytes(block) for block in copy)
    body = data[19:-2]  # 11-byte signature, flags, header extension length; the trailer is -1 as int16
    return np.frombuffer(body, _COPY_OUT_ROW)


# --- training windows ---------------------------------------------------------------------------------------------
def training_window(
    *,
    line: Line,
    start: datetime | None = None,
    end: datetime | None = None,
    period_s: float | None = None,
    tags: Sequence[str] | None = None,
) -> TrainingWindow:
    """Return the line's tags averaged over buckets of period_s (default: the line's sample period) in [start, end).

    Only good samples count. Without start/end the window spans the tags' data. Tags default to the active ones in
    role order (CV, MV, DV). Whole-minute periods aligned to the minute are read from the minute rollups.
    """
    chosen = _tags(line, tags)
    ids = [t.id for t in chosen]
    period = float(period_s or line.sample_period_s)
    period_us = int(round(period * 1e6))
    if start is None or end is None:
        first, last = _data_span(ids)
        start = start or first
        end = end or (last + timedelta(microseconds=period_us) if last else None)
    if start is None or end is None or end <= start:
        return _empty_window(chosen, period)
    start_us, end_us = datetime_to_us(start), datetime_to_us(end)
    n_rows = math.ceil((end_us - start_us) / period_us)
    if period_us % 60_000_000 == 0 and start_us % 60_000_000 == 0:
        sql = """SELECT tag_id, (extract(epoch FROM date_bin(%(period)s, bucket, %(start)s)) * 1e6)::int8,
                        sum(avg_value * n_good) / sum(n_good)
                 FROM telemetry_rollup_minute
                 WHERE tag_id = ANY(%(ids)s) AND bucket >= %(start)s AND bucket < %(end)s AND n_good > 0
                 GROUP BY 1, 2"""
    else:
        sql = """SELECT tag_id, (extract(epoch FROM date_bin(%(period)s, ts, %(start)s)) * 1e6)::int8, avg(value)
                 FROM telemetry_sample
                 WHERE tag_id = ANY(%(ids)s) AND ts >= %(start)s AND ts < %(end)s AND quality = 0
                 GROUP BY 1, 2"""
    rows = _copy_out(sql, {"period": timedelta(microseconds=period_us), "start": start, "end": end, "ids": ids})
    values = np.full((n_rows, len(ids)), np.nan)
    if rows.size:
        order = np.argsort(ids)
        column = order[np.searchsorted(np.asarray(ids)[order], rows["tag_id"])]  # tag id -> column
        k = (rows["bucket"] - start_us) // period_us
        inside = (k >= 0) & (k < n_rows)
        values[k[inside], column[inside]] = rows["avg"][inside]
    ts_us = start_us + period_us * np.arange(n_rows, dtype=np.int64)
    return TrainingWindow(
        timestamps=[us_to_datetime(int(t)) for t in ts_us],
        ts_us=ts_us,
        values=values,
        mask=~np.isnan(values),
        tags=tuple(t.name for t in chosen),
        roles=tuple(t.role for t in chosen),
        period_s=period,
    )


def data_end(*, line: Line) -> datetime | None:
    """Return the time of the line's newest sample on any active tag, or None when it has none."""
    return _data_span([t.id for t in _tags(line, None)])[1]


def _tags(line: Line, names: Sequence[str] | None) -> list[Tag]:
    if names is None:
        order = {"CV": 0, "MV": 1, "DV": 2}
        return sorted(line_tags(line=line), key=lambda t: (order.get(t.role, 3), t.name))
    by_name = {t.name: t for t in line_tags(line=line, include_inactive=True).filter(name__in=list(names))}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"not tags of line {line.key!r}: {', '.join(missing)}")
    return [by_name[n] for n in names]


def _data_span(ids: list[int]) -> tuple[datetime | None, datetime | None]:
    if not ids:
        return None, None
    row = _rows(
        """SELECT min(f), max(l) FROM unnest(%s::bigint[]) AS id,
                   LATERAL (SELECT min(ts) AS f, max(ts) AS l FROM telemetry_sample s WHERE s.tag_id = id) x""",
        [ids],
    )
    return row[0][0], row[0][1]


def _empty_window(tags: list[Tag], period: float) -> TrainingWindow:
    return TrainingWindow(
        timestamps=[],
        ts_us=np.zeros(0, np.int64),
        values=np.zeros((0, len(tags))),
        mask=np.zeros((0, len(tags)), bool),
        tags=tuple(t.name for t in tags),
        roles=tuple(t.role for t in tags),
        period_s=period,
    )


# --- charts -------------------------------------------------------------------------------------------------------
def chart_series(*, tag: Tag, start: datetime, end: datetime, max_points: int = 2000) -> ChartSeries:
    """Return a tag's series over [start, end) with at most about max_points points, never scanning raw rows when
    the range holds more samples than that (then minute or hour rollups, binned to a round bucket width)."""
    return chart_series_many(tags=[tag], start=start, end=end, max_points=max_points)[0]


def chart_series_many(
    *, tags: Sequence[Tag], start: datetime, end: datetime, max_points: int = 2000
) -> list[ChartSeries]:
    """Return `chart_series` of each tag (in order), one query for the tags of each sample period."""
    by_period: dict[float, list[Tag]] = defaultdict(list)
    for tag in tags:
        by_period[float(tag.line.sample_period_s) if tag.line_id else 1.0].append(tag)
    found: dict[int, ChartSeries] = {}
    for period_s, group in by_period.items():
        found.update(_chart_series(group, start, end, max_points, period_s))
    return [found[t.id] for t in tags]


def _chart_series(
    tags: list[Tag], start: datetime, end: datetime, max_points: int, period_s: float
) -> dict[int, ChartSeries]:
    span_s = (end - start).total_seconds()
    if span_s / max(period_s, 1e-6) <= max_points:
        return _chart_raw(tags, start, end)
    bucket_s = next((b for b in CHART_BUCKETS_S if span_s / b <= max_points), CHART_BUCKETS_S[-1])
    table = "telemetry_rollup_minute" if bucket_s < 3600 else "telemetry_rollup_hour"
    unit = 60 if bucket_s < 3600 else 3600
    origin = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: weekly buckets start on Mondays
    # Bucket starts come back as microseconds since the epoch: psycopg's timestamptz loader (time zone lookups per
    # value) took most of a day chart's query time.
    if bucket_s == unit:
        sql = f"""SELECT tag_id, (extract(epoch FROM bucket) * 1e6)::int8, avg_value, min_value, max_value,
                         n_bad + n_out_of_range
                  FROM {table} WHERE tag_id = ANY(%(tags)s) AND bucket >= %(lo)s AND bucket < %(end)s
                  ORDER BY tag_id, bucket"""
    else:
        sql = f"""SELECT tag_id, (extract(epoch FROM date_bin(%(width)s, bucket, %(origin)s)) * 1e6)::int8 AS b,
                         sum(avg_value * n_good) / nullif(sum(n_good), 0), min(min_value), max(max_value),
                         sum(n_bad + n_out_of_range)
                  FROM {table} WHERE tag_id = ANY(%(tags)s) AND bucket >= %(lo)s AND bucket < %(end)s
                  GROUP BY 1, 2 ORDER BY 1, 2"""
    lo = datetime.fromtimestamp(math.floor(start.timestamp() / bucket_s) * bucket_s, UTC)
    if bucket_s == 604800:
        lo = origin + timedelta(weeks=math.floor((start - origin) / timedelta(weeks=1)))
    params = {"lo": lo, "end": end, "width": timedelta(seconds=bucket_s), "origin": origin}
    by_tag = _by_tag(_rows(sql, {**params, "tags": [t.id for t in tags]}), tags)
    return {
        tag.id: ChartSeries(
            tag=tag.name,
            resolution=_label(bucket_s),
            bucket_s=bucket_s,
            source=table.removeprefix("telemetry_"),
            times_us=np.array([r[1] for r in by_tag[tag.id]], dtype=np.int64),
            values=[r[2] for r in by_tag[tag.id]],
            mins=[r[3] for r in by_tag[tag.id]],
            maxs=[r[4] for r in by_tag[tag.id]],
            bad=[int(r[5]) for r in by_tag[tag.id]],
        )
        for tag in tags
    }


def _chart_raw(tags: list[Tag], start: datetime, end: datetime) -> dict[int, ChartSeries]:
    rows = _rows(
        """SELECT tag_id, (extract(epoch FROM ts) * 1e6)::int8, CASE WHEN quality = 0 THEN value END, quality
                    FROM telemetry_sample WHERE tag_id = ANY(%s) AND ts >= %s AND ts < %s ORDER BY tag_id, ts""",
        [[t.id for t in tags], start, end],
    )
    by_tag = _by_tag(rows, tags)
    return {
        tag.id: ChartSeries(
            tag=tag.name,
            resolution="raw",
            bucket_s=0,
            source="raw",
            times_us=np.array([r[1] for r in by_tag[tag.id]], dtype=np.int64),
            values=[r[2] for r in by_tag[tag.id]],
            mins=None,
            maxs=None,
            bad=[int(r[3] != 0) for r in by_tag[tag.id]],
        )
        for tag in tags
    }


def _by_tag(rows: list[tuple], tags: list[Tag]) -> dict[int, list[tuple]]:
    """Group query rows (tag id first) by tag, every tag present even without rows."""
    out: dict[int, list[tuple]] = {t.id: [] for t in tags}
    for row in rows:
        out[row[0]].append(row)
    return out


def _label(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# --- quality ------------------------------------------------------------------------------------------------------
def quality_summary(*, line: Line, start: datetime | None = None, end: datetime | None = None) -> list[TagQuality]:
    """Return, per tag of the line, counts of good / bad / out-of-range samples, first and last sample time, and the
    most frequent reasons of bad samples, over [start, end) (default: all data). Counts come from the rollups."""
    tags = list(line_tags(line=line, include_inactive=True).order_by("role", "name"))
    ids = [t.id for t in tags]
    counts: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(3, np.int64))
    for tag_id, good, bad, oor in _counts(ids, start, end):
        counts[tag_id] += (good, bad, oor)
    bounds = "AND s.ts >= %(start)s AND s.ts < %(end)s" if start or end else ""
    params = {
        "ids": ids,
        "start": start or datetime(1900, 1, 1, tzinfo=UTC),
        "end": end or datetime(2200, 1, 1, tzinfo=UTC),
    }
    span = {
        r[0]: (r[1], r[2])
        for r in _rows(
            f"""
        SELECT id, f, l FROM unnest(%(ids)s::bigint[]) AS id, LATERAL (
            SELECT min(s.ts) AS f, max(s.ts) AS l FROM telemetry_sample s WHERE s.tag_id = id {bounds}) x""",
            params,
        )
    }
    reasons: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for tag_id, text, n in _rows(
        f"""
            SELECT s.tag_id, coalesce(r.text, 'unknown'), count(*) FROM telemetry_sample s
            LEFT JOIN telemetry_reason r ON r.id = s.reason_id
            WHERE s.tag_id = ANY(%(ids)s) AND s.quality <> 0 {bounds}
            GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2""",
        params,
    ):
        if len(reasons[tag_id]) < TOP_REASONS:
            reasons[tag_id].append((text, int(n)))
    return [
        TagQuality(
            tag=t.name,
            role=t.role,
            good=int(counts[t.id][0]),
            bad=int(counts[t.id][1]),
            out_of_range=int(counts[t.id][2]),
            first_time=span.get(t.id, (None, None))[0],
            last_time=span.get(t.id, (None, None))[1],
            top_reasons=reasons.get(t.id, []),
        )
        for t in tags
    ]


def _counts(ids: list[int], start: datetime | None, end: datetime | None) -> list[tuple]:
    """Per-tag counts: hour rollups for all data; minute rollups plus raw rows at the ragged edges otherwise."""
    if start is None and end is None:
        return _rows(
            """SELECT tag_id, sum(n_good), sum(n_bad), sum(n_out_of_range) FROM telemetry_rollup_hour
                        WHERE tag_id = ANY(%s) GROUP BY 1""",
            [ids],
        )
    lo = start or datetime(1900, 1, 1, tzinfo=UTC)
    hi = end or datetime(2200, 1, 1, tzinfo=UTC)
    lo_min = datetime.fromtimestamp(math.ceil(lo.timestamp() / 60) * 60, UTC)
    hi_min = max(lo_min, datetime.fromtimestamp(math.floor(hi.timestamp() / 60) * 60, UTC))
    raw = """SELECT tag_id, count(*) FILTER (WHERE quality = 0), count(*) FILTER (WHERE quality = 2),
                    count(*) FILTER (WHERE quality = 1)
             FROM telemetry_sample WHERE tag_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY 1"""
    out = _rows(
        """SELECT tag_id, sum(n_good), sum(n_bad), sum(n_out_of_range) FROM telemetry_rollup_minute
                   WHERE tag_id = ANY(%s) AND bucket >= %s AND bucket < %s GROUP BY 1""",
        [ids, lo_min, hi_min],
    )
    if lo_min >= hi_min:
        return _rows(raw, [ids, lo, hi])
    out += _rows(raw, [ids, lo, lo_min]) + _rows(raw, [ids, hi_min, hi])
    return out


# --- newest samples -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatestSample:
    """The newest stored sample of a tag (any quality) and its newest good one, up to a time."""

    tag: str
    role: str
    ts: datetime | None  # newest sample, None when the tag has none
    value: float | None
    quality: str  # "good", "bad", "out_of_range" or "none"
    reason: str  # why the newest sample is not good ("" when it is)
    good_ts: datetime | None  # newest good sample
    good_value: float | None


def latest_samples(*, line: Line, until: datetime, lookback_s: float) -> dict[str, LatestSample]:
    """Return each active tag's newest sample and newest good sample in (until - lookback_s, until], by name.

    One query for all the tags (two index probes per tag); tags in role, then name order.
    """
    tags = list(line_tags(line=line).order_by("role", "name"))
    rows = {
        r[0]: r[1:]
        for r in _rows(
            """
        SELECT t.id, n.ts, n.value, n.quality, r.text, g.ts, g.value
        FROM unnest(%(ids)s::bigint[]) AS t(id)
        LEFT JOIN LATERAL (SELECT s.ts, s.value, s.quality, s.reason_id FROM telemetry_sample s
                           WHERE s.tag_id = t.id AND s.ts > %(since)s AND s.ts <= %(until)s
                           ORDER BY s.ts DESC LIMIT 1) n ON true
        LEFT JOIN telemetry_reason r ON r.id = n.reason_id
        LEFT JOIN LATERAL (SELECT s.ts, s.value FROM telemetry_sample s
                           WHERE s.tag_id = t.id AND s.ts > %(since)s AND s.ts <= %(until)s AND s.quality = 0
                           ORDER BY s.ts DESC LIMIT 1) g ON true""",
            {"ids": [t.id for t in tags], "since": until - timedelta(seconds=lookback_s), "until": until},
        )
    }
    out: dict[str, LatestSample] = {}
    for tag in tags:
        ts, value, quality, reason, good_ts, good_value = rows[tag.id]
        label = Quality(quality).label if ts is not None else "none"
        out[tag.name] = LatestSample(
            tag=tag.name,
            role=tag.role,
            ts=ts,
            value=value,
            quality=label,
            reason=(reason or label) if ts is not None and quality != Quality.GOOD else "",
            good_ts=good_ts,
            good_value=good_value,
        )
    return out


# --- freshness ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TagFreshness:
    """Whether a tag's data can be used now: the one definition of "fresh" (data-quality table and recommender)."""

    sample: LatestSample  # the newest sample and the newest good one
    limit_s: float  # stale after this long without a good sample: TWINOPS_STALE_PERIODS line sample periods
    age_s: float | None  # seconds from the newest good sample to now; None without one in the lookback
    verdict: str  # "fresh"; "bad" (the current sample is not good); "stale" (no good sample within limit_s)
    problem: str  # why the tag is not fresh, naming it ("" when fresh)

    @property
    def fresh(self) -> bool:
        """Tell whether the tag's data may be used now."""
        return self.verdict == "fresh"


def freshness_limit_s(*, line: Line) -> float:
    """Return how long a tag of the line may go without a good sample and stay fresh, seconds."""
    return conf.stale_periods() * float(line.sample_period_s)


def tag_freshness(*, line: Line, now: datetime, lookback_s: float = FRESHNESS_LOOKBACK_S) -> dict[str, TagFreshness]:
    """Return each active tag's freshness at `now`, by name (one query for all the tags)."""
    limit_s = freshness_limit_s(line=line)
    out = {}
    for name, s in latest_samples(line=line, until=now, lookback_s=lookback_s).items():
        age = (now - s.good_ts).total_seconds() if s.good_ts else None
        if s.ts is None:
            verdict, problem = "stale", f"{name} has no sample in the last {lookback_s / 3600:g} h"
        elif s.quality != "good" and (now - s.ts).total_seconds() <= limit_s:
            verdict = "bad"
            problem = f"current {s.role} sample of {name} has {s.quality} quality ({s.reason}) at {s.ts.isoformat()}"
        elif age is None or age > limit_s:
            verdict = "stale"
            when = f"is {age:.0f} s old ({s.good_ts.isoformat()})" if s.good_ts else f"is older than {lookback_s:.0f} s"
            problem = f"newest good sample of {name} {when}"
        else:
            verdict, problem = "fresh", ""
        out[name] = TagFreshness(sample=s, limit_s=limit_s, age_s=age, verdict=verdict, problem=problem)
    return out


# --- import jobs --------------------------------------------------------------------------------------------------
def import_job_get(*, job_id: int) -> HistoryImportJob:
    """Return a history import job with its line; raise HistoryImportJob.DoesNotExist if there is none."""
    return HistoryImportJob.objects.select_related("line").get(pk=job_id)


def import_jobs_ahead(*, job: HistoryImportJob) -> int:
    """Return how many unfinished imports the ingest worker takes before this one (queued or running, older)."""
    older = models.Q(created_at__lt=job.created_at) | models.Q(created_at=job.created_at, pk__lt=job.pk)
    return HistoryImportJob.objects.filter(older, status__in=HistoryImportJob.UNFINISHED).count()


def import_job_rejections(*, job: HistoryImportJob) -> list[Rejection]:
    """Return an import job's rejection report: the rejected/flagged values, or the file's structural problems."""
    result = job.result or {}
    return [Rejection(**r) for r in (result.get("rejections") or result.get("problems") or [])]


def import_job_paths_unfinished() -> set[str]:
    """Return the files of import jobs still queued or running: the worker will read them."""
    return set(HistoryImportJob.objects.filter(status__in=HistoryImportJob.UNFINISHED).values_list("path", flat=True))
