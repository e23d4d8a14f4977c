"""Benchmark the telemetry ingest path (the idempotent one every source uses) against a bare binary COPY.

Run: `twinops bench ingest --json [--quick]` (Django set up by the CLI). Works in a scratch database
`twinops_bench` on the same PostgreSQL server (created and migrated here; its telemetry tables are emptied first);
the dev and test databases are never touched. Figures:
- samples_per_s: `samples_ingest` sustained over 5M samples (50 tags at 1 s, batches of 250k: classify, binary COPY
  into staging, INSERT … ON CONFLICT into the partitioned table, rollups merged), one transaction per batch;
- raw_copy_samples_per_s: the same rows, binary COPY into an unindexed plain table (the upper limit here);
- replay_added_rows: rows added by re-sending the first 1M samples (must be 0), with replay_samples_per_s;
- staged_upsert_samples_per_s: 1M NEW samples forced through the staging table + INSERT … ON CONFLICT path (the one
  overlapping batches take) instead of the direct COPY the service uses when a batch's ranges hold no samples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np

BENCH_DB = "twinops_bench"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@contextmanager
def scratch_database(name: str = BENCH_DB) -> Iterator[None]:
    """Point Django's default connection at a scratch database on the same server (created, migrated) meanwhile."""
    import psycopg
    from django.core.management import call_command
    from django.db import connections

    from twinops.config.database_roles import database_owner

    conn = connections["default"]
    with database_owner():  # the owner role may create databases; the application's role may not
        params = {
            k: v
            for k, v in conn.get_connection_params().items()
            if k not in {"cursor_factory", "context", "server_side_binding", "prepare_threshold"}
        }
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    original = conn.settings_dict["NAME"]
    conn.close()
    conn.settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        conn.close()
        conn.settings_dict["NAME"] = original


def bench_line(key: str, n_tags: int) -> Any:
    """Return the benchmark line with n_tags tags (created once)."""
    from twinops.lines.models import Line, Tag

    line, created = Line.objects.get_or_create(
        key=key, defaults={"name": key, "sample_period_s": 1.0, "created_at": T0}
    )
    for i in range(Tag.objects.filter(line=line).count(), n_tags):
        Tag.objects.create(line=line, name=f"tag{i:03d}", role="DV", unit="u", physical_low=-1e3, physical_high=1e3)
    return line


def synthetic_batches(*, n_tags: int, seconds: int, batch_samples: int, start_s: int = 0) -> list[Any]:
    """Return RawBatches of n_tags tags sampled every second (a sine plus noise; 0.1 % historian 'Bad' strings)."""
    from twinops.telemetry.batch import RawBatch

    rng = np.random.default_rng(0)
    per_batch = max(1, batch_samples // n_tags)  # seconds per batch
    names = tuple(f"tag{i:03d}" for i in range(n_tags))
    t0_us = int(T0.timestamp() * 1e6)
    batches = []
    for s0 in range(start_s, start_s + seconds, per_batch):
        secs = np.arange(s0, min(s0 + per_batch, start_s + seconds), dtype=np.int64)
        tag = np.tile(np.arange(n_tags, dtype=np.int32), secs.size)
        ts = t0_us + np.repeat(secs, n_tags) * 1_000_000
        value = np.sin(ts / 6e8 + tag) * 100 + rng.normal(0, 1, tag.size)
        text_at = np.nonzero(rng.random(tag.size) < 0.001)[0]
        batches.append(
            RawBatch(
                names=names,
                tag=tag,
                ts_us=ts,
                value=value,
                row=np.arange(1, tag.size + 1),
                text_at=text_at,
                text=("Bad",) * text_at.size,
            )
        )
    return batches


def _empty_telemetry() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE telemetry_sample, telemetry_rollup_minute, telemetry_rollup_hour")
        cur.execute("DROP TABLE IF EXISTS bench_raw_copy")
        cur.execute(
            "CREATE TABLE bench_raw_copy (tag_id bigint, ts timestamptz, value double precision, "
            "quality smallint, reason_id integer)"
        )


def _raw_copy(batches: list[Any], tag_ids: np.ndarray) -> float:
    from django.db import transaction

    from twinops.telemetry import store

    started = time.perf_counter()
    for b in batches:
        with transaction.atomic(), store.raw_connection().cursor() as cur:
            buffer = store.copy_buffer(
                tag_id=tag_ids[b.tag],
                ts_us=b.ts_us,
                value=b.value,
                quality=np.zeros(len(b), np.int16),
                reason_id=np.zeros(len(b), np.int32),
            )
            with cur.copy("COPY bench_raw_copy FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(buffer)
    return time.perf_counter() - started


def _staged_new_data(line: Any, *, n_tags: int, samples: int, batch: int, after_s: int) -> tuple[float, int]:
    """Time new samples through the staging + ON CONFLICT path by making the overlap check answer "overlaps"."""
    from twinops.telemetry import store
    from twinops.telemetry.services import samples_ingest

    batches = synthetic_batches(n_tags=n_tags, seconds=samples // n_tags, batch_samples=batch, start_s=after_s)
    real_check = store.ranges_hold_samples
    store.ranges_hold_samples = lambda **_: True  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        inserted = sum(samples_ingest(line=line, batch=b, source="bench", actor=None).samples_inserted for b in batches)
        elapsed = time.perf_counter() - started
    finally:
        store.ranges_hold_samples = real_check  # type: ignore[assignment]
    if inserted != sum(len(b) for b in batches):
        raise RuntimeError(f"staged path stored {inserted} of {sum(len(b) for b in batches)} new samples")
    return elapsed, inserted


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure ingest throughput, the raw COPY limit and replay idempotency; return the figures."""
    from twinops.lines.models import Tag
    from twinops.telemetry.services import samples_ingest

    n_tags = 50
    total = 200_000 if quick else 5_000_000
    batch = 50_000 if quick else 250_000
    replay = 100_000 if quick else 1_000_000
    with scratch_database():
        line = bench_line("bench-ingest", n_tags)
        _empty_telemetry()
        batches = synthetic_batches(n_tags=n_tags, seconds=total // n_tags, batch_samples=batch)
        ids = dict(Tag.objects.filter(line=line).values_list("name", "id"))
        tag_ids = np.asarray([ids[n] for n in batches[0].names], np.int64)

        started = time.perf_counter()
        rates, inserted = [], 0
        for b in batches:
            t = time.perf_counter()
            inserted += samples_ingest(line=line, batch=b, source="bench", actor=None).samples_inserted
            rates.append(len(b) / (time.perf_counter() - t))
        ingest_s = time.perf_counter() - started

        raw_s = _raw_copy(batches, tag_ids)

        resend = batches[: max(1, replay // batch)]
        started = time.perf_counter()
        added = sum(samples_ingest(line=line, batch=b, source="bench", actor=None).samples_inserted for b in resend)
        replay_s = time.perf_counter() - started
        resent = sum(len(b) for b in resend)

        staged_s, staged = _staged_new_data(line, n_tags=n_tags, samples=replay, batch=batch, after_s=total // n_tags)
    return {
        "samples": total,
        "samples_inserted": inserted,
        "batch_samples": batch,
        "samples_per_s": round(total / ingest_s),
        "slowest_batch_samples_per_s": round(min(rates)),
        "raw_copy_samples_per_s": round(total / raw_s),
        "replay_samples": resent,
        "replay_added_rows": added,
        "replay_samples_per_s": round(resent / replay_s),
        "staged_upsert_samples_per_s": round(staged / staged_s),
        "target_samples_per_s": 150_000,
    }


if __name__ == "__main__":
    import argparse
    import json
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinops.config.settings")
    django.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick)))
