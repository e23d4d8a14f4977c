"""The SQL side of ingest: binary COPY (straight in for new data, else into a staging table and INSERT … ON
CONFLICT), monthly partitions, rollups."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from django.db import connection

from twinops.core import locks
from twinops.telemetry.batch import us_to_datetime

log = logging.getLogger(__name__)

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: PostgreSQL's binary timestamptz origin
PARENT = "telemetry_sample"
SIDE_LOCK_TIMEOUT = "2s"  # how long the side connection waits for the locks an ATTACH needs before falling back

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_COPY_TRAILER = b"\xff\xff"

STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS telemetry_staging (
    tag_id bigint, ts timestamptz, value double precision, quality smallint, reason_id integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS telemetry_rollup_staging (
    kind smallint, tag_id bigint, bucket timestamptz, n_good integer, n_bad integer, n_out_of_range integer,
    min_value double precision, avg_value double precision, max_value double precision
) ON COMMIT DELETE ROWS
"""
_STAGING_TYPES = (("tag_id", ">i8"), ("ts", ">i8"), ("value", ">f8"), ("quality", ">i2"), ("reason_id", ">i4"))
_ROLLUP_TYPES = (
    ("kind", ">i2"),
    ("tag_id", ">i8"),
    ("bucket", ">i8"),
    ("n_good", ">i4"),
    ("n_bad", ">i4"),
    ("n_out_of_range", ">i4"),
    ("min_value", ">f8"),
    ("avg_value", ">f8"),
    ("max_value", ">f8"),
)
ROLLUP_UNITS_US = {0: 60_000_000, 1: 3_600_000_000}  # kind -> bucket width: minute, hour

# Merge the inserted rows (exactly the new ones: ON CONFLICT DO NOTHING never overwrites) into the rollups. Adding
# the delta of the new rows equals recomputing the bucket from raw, costs O(new rows), and stays right when two
# writers add to the same bucket at once (the upsert's row lock orders them; a recompute would lose one's rows).
_ROLLUP = """
INSERT INTO {table} AS r (tag_id, bucket, n_good, n_bad, n_out_of_range, min_value, avg_value, max_value)
{select}
ON CONFLICT (tag_id, bucket) DO UPDATE SET
    n_good = r.n_good + EXCLUDED.n_good,
    n_bad = r.n_bad + EXCLUDED.n_bad,
    n_out_of_range = r.n_out_of_range + EXCLUDED.n_out_of_range,
    min_value = LEAST(r.min_value, EXCLUDED.min_value),
    max_value = GREATEST(r.max_value, EXCLUDED.max_value),
    avg_value = CASE WHEN r.n_good + EXCLUDED.n_good = 0 THEN NULL ELSE
        (COALESCE(r.avg_value * r.n_good, 0) + COALESCE(EXCLUDED.avg_value * EXCLUDED.n_good, 0))
        / (r.n_good + EXCLUDED.n_good) END
"""

_FROM_INSERTED = """
SELECT tag_id, date_trunc('{unit}', ts, 'UTC'),
       count(*) FILTER (WHERE quality = 0), count(*) FILTER (WHERE quality = 2), count(*) FILTER (WHERE quality = 1),
       min(value) FILTER (WHERE quality = 0), avg(value) FILTER (WHERE quality = 0), max(value) FILTER (WHERE quality = 0)
FROM ins GROUP BY 1, 2"""

INSERT_FROM_STAGING = f"""
WITH ins AS (
    INSERT INTO telemetry_sample (tag_id, ts, value, quality, reason_id)
    SELECT tag_id, ts, CASE WHEN quality = 2 THEN NULL ELSE value END, quality, NULLIF(reason_id, 0)
    FROM telemetry_staging
    ON CONFLICT (tag_id, ts) DO NOTHING
    RETURNING tag_id, ts, value, quality
), minute AS ({_ROLLUP.format(table="telemetry_rollup_minute", select=_FROM_INSERTED.format(unit="minute"))}
), hour AS ({_ROLLUP.format(table="telemetry_rollup_hour", select=_FROM_INSERTED.format(unit="hour"))})
SELECT count(*) FROM ins
"""

_REBUILD = """
DELETE FROM {table} WHERE tag_id = ANY(%(tags)s) AND bucket >= date_trunc('{unit}', %(start)s::timestamptz, 'UTC')
    AND bucket < %(end)s;
INSERT INTO {table} (tag_id, bucket, n_good, n_bad, n_out_of_range, min_value, avg_value, max_value)
SELECT tag_id, date_trunc('{unit}', ts, 'UTC'),
       count(*) FILTER (WHERE quality = 0), count(*) FILTER (WHERE quality = 2), count(*) FILTER (WHERE quality = 1),
       min(value) FILTER (WHERE quality = 0), avg(value) FILTER (WHERE quality = 0), max(value) FILTER (WHERE quality = 0)
FROM telemetry_sample
WHERE tag_id = ANY(%(tags)s) AND ts >= date_trunc('{unit}', %(start)s::timestamptz, 'UTC') AND ts < %(end_ceil)s
GROUP BY 1, 2;
"""


def binary_copy(types: tuple[tuple[str, str], ...], columns: dict[str, np.ndarray]) -> bytes:
    """Encode columns (no NULLs) as a PostgreSQL binary COPY stream in one vectorised pass."""
    return _COPY_HEADER + _binary_rows(types, columns) + _COPY_TRAILER


def _binary_rows(
    types: tuple[tuple[str, str], ...], columns: dict[str, np.ndarray], nulls: frozenset[str] = frozenset()
) -> bytes:
    """Encode rows of the binary COPY format; the columns named in `nulls` are NULL in every row."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, kind in types:
        fields += [(f"len_{name}", ">i4")] + ([] if name in nulls else [(name, kind)])
    rows = np.empty(len(next(iter(columns.values()))), np.dtype(fields))  # packed: exactly the wire layout
    rows["n"] = len(types)
    for name, kind in types:
        rows[f"len_{name}"] = -1 if name in nulls else np.dtype(kind).itemsize
        if name not in nulls:
            rows[name] = columns[name]
    return rows.tobytes()


def copy_new(
    *, tag_id: np.ndarray, ts_us: np.ndarray, value: np.ndarray, quality: np.ndarray, reason_id: np.ndarray
) -> int:
    """COPY rows known to be new straight into the samples table (no staging, no conflict handling); return rows.

    Raises psycopg.errors.UniqueViolation if a concurrent writer stored one of the keys meanwhile: the caller
    rolls back to a savepoint and takes the ON CONFLICT path.
    """
    columns = {"tag_id": tag_id, "ts": ts_us - PG_EPOCH_US, "value": value, "quality": quality, "reason_id": reason_id}
    parts = [_COPY_HEADER]
    for grade, nulls in ((0, frozenset({"reason_id"})), (1, frozenset()), (2, frozenset({"value"}))):
        pick = quality == grade  # good rows have no reason, bad rows no value: one fixed layout per grade
        if pick.any():
            parts.append(_binary_rows(_STAGING_TYPES, {k: v[pick] for k, v in columns.items()}, nulls))
    parts.append(_COPY_TRAILER)
    with raw_connection().cursor() as cur:
        with cur.copy(
            "COPY telemetry_sample (tag_id, ts, value, quality, reason_id) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            for part in parts:
                copy.write(part)
    return int(tag_id.size)


def copy_buffer(
    *, tag_id: np.ndarray, ts_us: np.ndarray, value: np.ndarray, quality: np.ndarray, reason_id: np.ndarray
) -> bytes:
    """Encode sample rows for the staging table (reason_id 0 = none; value ignored for bad quality)."""
    return binary_copy(
        _STAGING_TYPES,
        {"tag_id": tag_id, "ts": ts_us - PG_EPOCH_US, "value": value, "quality": quality, "reason_id": reason_id},
    )


def raw_connection() -> psycopg.Connection:
    """Return the psycopg connection under Django's (same session, same transaction)."""
    connection.ensure_connection()
    return connection.connection


def stage(buffer: bytes, table: str = "telemetry_staging") -> None:
    """Replace a staging table's rows with a binary COPY stream."""
    raw = raw_connection()
    with raw.cursor() as cur:
        cur.execute(STAGING_DDL)
        cur.execute(f"TRUNCATE {table}")
        with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
            view = memoryview(buffer)
            for start in range(0, len(view), 8 << 20):
                copy.write(view[start : start + (8 << 20)])


def ranges_hold_samples(*, tag_id: np.ndarray, ts_us: np.ndarray) -> bool:
    """Tell whether any tag already has a sample between its first and last timestamp in these (sorted) rows."""
    starts = np.r_[0, np.nonzero(np.diff(tag_id))[0] + 1]
    ends = np.r_[starts[1:], tag_id.size] - 1
    with raw_connection().cursor() as cur:
        cur.execute(
            """SELECT EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[])
                                         AS r(tag_id, lo, hi)
                       WHERE EXISTS (SELECT 1 FROM telemetry_sample s
                                     WHERE s.tag_id = r.tag_id AND s.ts >= r.lo AND s.ts <= r.hi))""",
            [tag_id[starts].tolist(), [_dt(t) for t in ts_us[starts]], [_dt(t) for t in ts_us[ends]]],
        )
        row = cur.fetchone()
    return bool(row and row[0])


def _dt(us: np.integer) -> datetime:
    return us_to_datetime(int(us))


def rollups_merge(*, tag_id: np.ndarray, ts_us: np.ndarray, value: np.ndarray, quality: np.ndarray) -> None:
    """Merge the rollups of rows just inserted (sorted by tag, time) into the minute and hour rollup tables."""
    parts = [_rollup_deltas(kind, width, tag_id, ts_us, value, quality) for kind, width in ROLLUP_UNITS_US.items()]
    columns = {name: np.concatenate([p[name] for p in parts]) for name, _ in _ROLLUP_TYPES}
    stage(binary_copy(_ROLLUP_TYPES, columns), table="telemetry_rollup_staging")
    with raw_connection().cursor() as cur:
        for kind, table in ((0, "telemetry_rollup_minute"), (1, "telemetry_rollup_hour")):
            cur.execute(
                _ROLLUP.format(
                    table=table,
                    select=f"""
                SELECT tag_id, bucket, n_good, n_bad, n_out_of_range, NULLIF(min_value, 'NaN'),
                       NULLIF(avg_value, 'NaN'), NULLIF(max_value, 'NaN')
                FROM telemetry_rollup_staging WHERE kind = {kind}""",
                )
            )


def _rollup_deltas(
    kind: int, width_us: int, tag_id: np.ndarray, ts_us: np.ndarray, value: np.ndarray, quality: np.ndarray
) -> dict[str, np.ndarray]:
    bucket = ts_us // width_us  # floor, also before 1970
    starts = np.r_[0, np.nonzero((np.diff(tag_id) != 0) | (np.diff(bucket) != 0))[0] + 1]
    good = quality == 0
    n_good = np.add.reduceat(good.astype(np.int64), starts)
    total = np.add.reduceat(np.where(good, value, 0.0), starts)
    lo = np.minimum.reduceat(np.where(good, value, np.inf), starts)
    hi = np.maximum.reduceat(np.where(good, value, -np.inf), starts)
    none = n_good == 0
    return {
        "kind": np.full(starts.size, kind, np.int16),
        "tag_id": tag_id[starts],
        "bucket": bucket[starts] * width_us - PG_EPOCH_US,
        "n_good": n_good,
        "n_bad": np.add.reduceat((quality == 2).astype(np.int64), starts),
        "n_out_of_range": np.add.reduceat((quality == 1).astype(np.int64), starts),
        "min_value": np.where(none, np.nan, lo),
        "avg_value": np.where(none, np.nan, total / np.maximum(n_good, 1)),
        "max_value": np.where(none, np.nan, hi),
    }


def insert_staged() -> int:
    """Move staged rows into the samples table (existing keys skipped: replays add nothing), merge the rollups of
    the rows added in the same statement; return rows added."""
    with raw_connection().cursor() as cur:
        cur.execute(INSERT_FROM_STAGING)
        row = cur.fetchone()
    return int(row[0]) if row else 0


def reason_ids(texts: list[str]) -> dict[str, int]:
    """Return the id of each reason text, adding the texts not seen before."""
    if not texts:
        return {}
    with raw_connection().cursor() as cur:
        cur.execute("SELECT text, id FROM telemetry_reason WHERE text = ANY(%s)", [texts])
        found: dict[str, int] = dict(cur.fetchall())
        missing = [t for t in texts if t not in found]
        if missing:
            cur.execute(
                "INSERT INTO telemetry_reason (text) SELECT unnest(%s::text[]) ON CONFLICT (text) DO NOTHING", [missing]
            )
            cur.execute("SELECT text, id FROM telemetry_reason WHERE text = ANY(%s)", [missing])
            found.update(dict(cur.fetchall()))
    return found


def partition_name(month: np.datetime64) -> str:
    """Return the partition table holding a month, e.g. telemetry_sample_p2024_01."""
    year, mon = str(month.astype("datetime64[M]")).split("-")
    return f"{PARENT}_p{year}_{mon}"


def _bounds(month: np.datetime64) -> tuple[str, str]:
    start = month.astype("datetime64[M]")
    return f"{start}-01 00:00:00+00", f"{start + 1}-01 00:00:00+00"


def existing_partitions() -> set[str]:
    """Return the names of the samples table's partitions."""
    with raw_connection().cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [PARENT],
        )
        return {r[0] for r in cur.fetchall()}


_created = threading.local()  # .names: partitions the side connection committed for this thread's open ingest


def partitions_ensure(ts_us: np.ndarray) -> list[str]:
    """Attach a monthly partition for every month the timestamps fall in that has none yet; return those added.

    Partitions are attached on a side connection and committed at once, so that a long import does not hold
    locks on the samples table until it commits. ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so
    concurrent ingest and reads go on; it needs an exclusive lock on the DEFAULT partition for a moment. When the
    side connection cannot get it in time (this very transaction may have read the DEFAULT partition), the partition
    is attached in this transaction instead. Those the side connection added are remembered until
    `partitions_created_take`, so that an ingest that rolls back drops them again (`partitions_drop_empty`).
    The months' partitions are then locked for this transaction, so no such clean-up can drop one under it.
    """
    if ts_us.size == 0:
        return []
    months = np.unique(ts_us.astype("datetime64[us]").astype("datetime64[M]"))
    for _ in range(3):  # a partition dropped between the check and the lock (a concurrent clean-up): again
        have = existing_partitions()
        wanted = [m for m in months if partition_name(m) not in have]
        added: list[str] = []
        if wanted:
            try:
                with psycopg.connect(**_side_params(), autocommit=True) as side:
                    side.execute(f"SET lock_timeout = '{SIDE_LOCK_TIMEOUT}'")
                    added = _attach(side, wanted)
                    _created.__dict__.setdefault("names", []).extend(added)
            except psycopg.errors.LockNotAvailable:
                log.info("attaching partitions in the ingest transaction: the side connection could not lock in time")
                added = _attach(raw_connection(), wanted)
        if _partitions_lock([partition_name(m) for m in months]):
            return added
    raise RuntimeError("the samples table's partitions kept changing while this batch was stored; send it again")


def _partitions_lock(names: list[str]) -> bool:
    """Lock partitions as a writer does until this transaction ends; False if one no longer exists."""
    raw = raw_connection()
    try:
        with raw.transaction():  # a savepoint: a missing table must not abort the ingest's transaction
            raw.execute(f"LOCK TABLE {', '.join(names)} IN ROW EXCLUSIVE MODE")
    except psycopg.errors.UndefinedTable:
        return False
    return True


def partitions_created_take() -> list[str]:
    """Return and forget the partitions this thread's side connection added since the last call."""
    names: list[str] = _created.__dict__.pop("names", [])
    return names


def partitions_drop_empty(names: list[str]) -> list[str]:
    """Drop those of these partitions that hold no rows and that no transaction uses now; return those dropped.

    For an ingest that rolled back after its side connection committed new partitions: only accepted data makes
    partitions. A partition another transaction is writing (or holds locked) is left alone.
    """
    dropped: list[str] = []
    if not names:
        return dropped
    with psycopg.connect(**_side_params(), autocommit=True) as side:
        side.execute("SET lock_timeout = '200ms'")  # DROP locks the parent: never queue readers behind it for long
        for name in names:
            try:
                with side.transaction():
                    side.execute("SELECT pg_advisory_xact_lock(%s)", [locks.TELEMETRY_PARTITIONS])
                    if side.execute("SELECT to_regclass(%s)", [name]).fetchone() == (None,):
                        continue
                    side.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE NOWAIT")
                    if side.execute(f"SELECT EXISTS (SELECT 1 FROM {name})").fetchone() == (False,):
                        side.execute(f"DROP TABLE {name}")
                        dropped.append(name)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
                log.info("partition %s is in use; left in place", name)
    return dropped


def _attach(conn: psycopg.Connection, months: list[np.datetime64]) -> list[str]:
    added = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [locks.TELEMETRY_PARTITIONS])
        have = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass",
                [PARENT],
            ).fetchall()
        }
        for month in months:
            name = partition_name(month)
            if name in have:
                continue
            low, high = _bounds(month)
            conn.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            conn.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')")
            added.append(name)
    return added


def _side_params() -> dict[str, Any]:
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "server_side_binding", "prepare_threshold"):
        params.pop(key, None)
    return params


def rollups_rebuild(*, tag_ids: list[int], start: datetime, end: datetime) -> None:
    """Recompute the minute and hour rollups of tags over [start, end) from the raw samples (repair tool)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    with raw_connection().cursor() as cur:
        for table, unit in (("telemetry_rollup_minute", "minute"), ("telemetry_rollup_hour", "hour")):
            cur.execute("SELECT date_trunc(%s, %s::timestamptz, 'UTC') + ('1 ' || %s)::interval", [unit, end, unit])
            row = cur.fetchone()
            end_ceil = row[0] if row else end  # whole buckets: the one holding `end` is recomputed completely
            for statement in _REBUILD.format(table=table, unit=unit).strip().split(";\n"):
                if statement.strip():
                    cur.execute(statement, {"tags": tag_ids, "start": start, "end": end_ceil, "end_ceil": end_ceil})
