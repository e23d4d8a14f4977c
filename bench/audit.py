"""Benchmark the audit trail: appending, verifying, exporting, paging the log at 1M events, and tamper detection.

Run: `twinops bench audit --json [--quick]` (Django set up by the CLI). Uses the scratch database `twinops_bench_audit`
(see bench/ingest.py); its 1M events (a valid chain, written once with COPY and kept between runs) are loaded only
when missing. The signing key and anchor log are temporary files. Figures, each beside its baseline:
- append_events_per_s: 8 writer threads, one event per transaction (audit_record), the median of 3 runs of 12,000
  events (all in `append_events_per_s_runs`: on a 2-core machine single runs of 4,000 ranged 1,700-2,240), vs
  ..._1_writer and vs ..._flush_only: 8 threads that only wait for the WAL on disk, as each append does after its
  commit (PostgreSQL 17+): the disk's ceiling, as each writer waits for a flush;
- verify_events_per_s: audit_chain_verify (Python: hashes, links, columns) vs the SQL baseline (hashes and links
  only, in one window query);
- export_seconds_per_100k_events: audit_export of 100k events (quick: 10k, scaled) vs a plain COPY of those rows,
  once the head is anchored (as the beat keeps it); first_anchor_seconds: that first anchor, which verifies the
  whole chain before signing it;
- log_page_p95_ms: audit_events_page (keyset) filtered by time range and action, 50 rows, at random depths, vs
  OFFSET paging to the same depths;
- tamper_trials / tamper_detected: bench/_tamper.py's random tampers (database and bundles) in a rolled-back
  transaction of the scratch database `twinops_bench_audit_tamper`: the two must be equal.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.ingest import scratch_database

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ACTIONS = ("line.created", "proposal.approved", "proposal.rejected", "release.write", "user.login", "token.issued")
LINES = ("reactor", "preheat", "")


class _Rollback(Exception):
    pass


def _p95(times: list[float]) -> float:
    return round(float(np.percentile(np.asarray(times) * 1000, 95)), 2)


def _load(n: int) -> int:
    """Make sure the table holds at least n events (a valid chain continuing the present head); return the count."""
    from django.db import connection

    from twinops.audit.canonical import GENESIS_SHA256, canonical_dumps, event_sha256

    with connection.cursor() as cur:
        cur.execute("SELECT id, sha256 FROM audit_auditevent ORDER BY id DESC LIMIT 1")
        row = cur.fetchone()
    head, prev = (row[0], row[1]) if row else (0, GENESIS_SHA256)
    if head >= n:
        return head
    rng = random.Random(head)
    columns = (
        "id, occurred_at, actor_label, action, object_type, object_id, reason, before, after, prev_sha256, sha256, "
        "scheme, canonical, line_key"
    )
    with connection.cursor() as cur, cur.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
        for eid in range(head + 1, n + 1):
            line = LINES[eid % 3]
            doc: dict[str, Any] = {
                "id": eid,
                "occurred_at": (T0 + timedelta(seconds=eid * 30)).isoformat(),
                "actor": f"user{eid % 17}",
                "action": ACTIONS[eid % len(ACTIONS)],
                "object_type": "bench.object",
                "object_id": str(eid % 1000),
                "reason": "bench",
                "before": None,
                "after": {"value": rng.random(), "step": eid % 10},
            }
            if line:
                doc["line"] = line
            canonical = canonical_dumps(doc)
            sha = event_sha256(prev_sha256=prev, canonical=canonical)
            copy.write_row(
                [eid, doc["occurred_at"], doc["actor"], doc["action"], doc["object_type"], doc["object_id"], "bench",
                 None, json.dumps(doc["after"]), prev, sha, 2, canonical, line]
            )  # fmt: skip
            prev = sha
    with connection.cursor() as cur:
        cur.execute("ANALYZE audit_auditevent")
    return n


def _per_second(writers: int, per_writer: int, work: Callable[[int], None]) -> float:
    """Return writers x per_writer / seconds for `work(writer)` run on that many threads, started together."""
    from django.db import connection

    start_gate = threading.Barrier(writers + 1)

    def run(w: int) -> None:
        start_gate.wait()
        try:
            work(w)
        finally:
            connection.close()  # each thread's own connection

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return round(writers * per_writer / (time.perf_counter() - began), 1)


def _append(writers: int, per_writer: int) -> float:
    """Return events appended per second by `writers` threads, each committing one audit_record per transaction."""
    from django.db import transaction

    from twinops.audit.services import audit_record

    def write(w: int) -> None:
        for i in range(per_writer):
            with transaction.atomic():
                audit_record(actor=f"system:bench{w}", action="bench.append", object_type="x", object_id=str(i))

    return _per_second(writers, per_writer, write)


def _flush_only(writers: int, per_writer: int) -> float:
    """Return durable commits per second of `writers` threads that write nothing but wait for the WAL on disk.

    The disk's ceiling for appends with that many writers (each waits for a flush): the append's own baseline.
    """
    from django.db import connection

    def flush(_: int) -> None:
        with connection.cursor() as cur:
            for _ in range(per_writer):  # the flush audit.services sends after an append's commit
                cur.execute("SELECT pg_logical_emit_message(false, 'twinops.audit', '', true)")

    return _per_second(writers, per_writer, flush)


def _loaded_head() -> int:
    """Return the newest id among the loaded events (occurred_at = T0 + 30 s x id), whatever the appends added.

    Each run's appends (8 x 500 + 500 events, stamped now) stay in the table, after the loaded ones: paging and
    exporting by time over the loaded span must not count them (after ~20 runs the export range found none).
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT max(id) FROM audit_auditevent WHERE occurred_at = %s + id * interval '30 seconds'", [T0])
        return int(cur.fetchone()[0])


def _verify_sql() -> tuple[int, float]:
    """Check hashes and links in one SQL query (the baseline); return (events, seconds)."""
    from django.db import connection

    began = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), bool_and(ok) FROM (SELECT sha256 = encode(sha256(convert_to(prev_sha256 || canonical, "
            "'UTF8')), 'hex') AND prev_sha256 = coalesce(lag(sha256) OVER (ORDER BY id), repeat('0', 64)) AS ok "
            "FROM audit_auditevent) AS checked"
        )
        count, ok = cur.fetchone()
    if not ok:
        raise RuntimeError("the SQL baseline found a bad event in the benchmark chain")
    return int(count), time.perf_counter() - began


def _pages(head: int, repeats: int) -> tuple[float, float]:
    """Return p95 ms of keyset pages and of OFFSET pages at the same random depths (time range + action filter)."""
    from twinops.audit.models import AuditEvent
    from twinops.audit.selectors import EventFilter, audit_events_page

    rng = random.Random(5)
    keyset, offset = [], []
    span = head * 30  # seconds of events
    for _ in range(repeats):
        lo = T0 + timedelta(seconds=rng.uniform(0, span * 0.5))
        hi = lo + timedelta(seconds=span * 0.5)
        where = EventFilter(action=rng.choice(ACTIONS), start=lo, end=hi)
        depth = rng.randint(0, 200)  # pages from the newest
        cursor_id = int(hi.timestamp() - T0.timestamp()) // 30 - depth * 50 * len(ACTIONS)
        began = time.perf_counter()
        page = audit_events_page(where=where, before=max(cursor_id, 1), size=50)
        keyset.append(time.perf_counter() - began)
        rows = AuditEvent.objects.filter(action=where.action, occurred_at__gte=where.start, occurred_at__lt=where.end)
        began = time.perf_counter()
        list(rows.order_by("-id").only("id", "occurred_at", "actor_label", "action")[depth * 50 : depth * 50 + 50])
        offset.append(time.perf_counter() - began)
        assert len(page.events) <= 50
    return _p95(keyset), _p95(offset)


def _export(head: int, count: int, folder: Path) -> tuple[float, float]:
    """Return seconds per 100k events for audit_export of `count` events, and for a COPY of the same rows."""
    from django.db import connection

    from twinops.auditing.services import audit_export

    first = head - count + 1
    start, end = T0 + timedelta(seconds=first * 30), T0 + timedelta(seconds=(head + 1) * 30)
    began = time.perf_counter()
    result = audit_export(actor="system:bench", start=start, end=end, out=folder / "bench.zip")
    exported = time.perf_counter() - began
    assert result.first_id == first, (result.first_id, first)
    began = time.perf_counter()
    sink = io.BytesIO()
    with connection.cursor() as cur:
        with cur.copy(f"COPY (SELECT * FROM audit_auditevent WHERE id >= {first} ORDER BY id) TO STDOUT") as copy:
            for block in copy:
                sink.write(block)
    copied = time.perf_counter() - began
    scale = 100_000 / count
    return round(exported * scale, 2), round(copied * scale, 2)


@contextmanager
def _as_superuser() -> Iterator[bool]:
    """Connect as the embedded server's superuser meanwhile (the attacker of the tamper trials); False: none known."""
    from django.db import connections

    from twinops.config.database_roles import SUPERUSER
    from twinops.config.embedded import data_home

    path = data_home() / "postgres-auth" / f"{SUPERUSER}.pgpass"  # as the embedded server wrote it
    if not path.exists():  # an external DATABASE_URL: the application's role cannot tamper, nor can we
        yield False
        return
    conn = connections["default"]
    conn.close()
    original = conn.settings_dict
    conn.settings_dict = {
        **original,
        "USER": SUPERUSER,
        "PASSWORD": "",
        "OPTIONS": {**original["OPTIONS"], "passfile": str(path)},
    }
    try:
        yield True
    finally:
        conn.close()
        conn.settings_dict = original


def _tamper(db_trials: int, bundle_trials: int, folder: Path) -> tuple[int, int, int]:
    """Run random tampers on a fresh small chain inside a transaction that is rolled back; (trials, detected, named)."""
    from django.db import transaction

    from bench._tamper import BUNDLE_KINDS, DB_KINDS, Bundle, bundle_trial, db_trial
    from twinops.audit import conf
    from twinops.audit.anchors import public_key_hex, signing_key
    from twinops.audit.services import audit_anchor, audit_record
    from twinops.auditing.services import audit_export

    trials = []
    try:
        with transaction.atomic():
            for block in range(6):
                with transaction.atomic():
                    for i in range(10):
                        audit_record(actor="system:bench", action="bench.done", object_type="x", object_id=str(i),
                                     after={"i": block * 10 + i, "z": -0.0})  # fmt: skip
                audit_anchor()
            audit_export(actor="system:bench", start=None, end=None, out=folder / "tamper.zip")
            key = public_key_hex(signing_key(conf.signing_key_path(), create=False))
            anchored = sorted({json.loads(t)["event_id"] for t in conf.anchor_log_path().read_text().splitlines()})
            rng = random.Random(1)
            for i in range(db_trials):
                trials.append(db_trial(rng, head=anchored[-1], anchored=anchored, kind=DB_KINDS[i % len(DB_KINDS)]))
            bundle = Bundle.read((folder / "tamper.zip").read_bytes())
            for i in range(bundle_trials):
                trials.append(bundle_trial(rng, bundle, public_key=key, kind=BUNDLE_KINDS[i % len(BUNDLE_KINDS)]))
            raise _Rollback
    except _Rollback:
        pass
    return len(trials), sum(t.detected for t in trials), sum(t.detected and t.named_right for t in trials)


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure append, verify, export, paging and tamper detection (quick: smaller everything); return the figures."""
    from django.test import override_settings

    from twinops.audit.services import audit_anchor, audit_chain_verify

    events = 50_000 if quick else 1_000_000
    per_writer = 100 if quick else 1500  # 12,000 events a run: a few seconds, and checkpoints fall inside
    export_count = 10_000 if quick else 100_000
    out: dict[str, Any] = {"events_in_table": 0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keys = {"TWINOPS_AUDIT_SIGNING_KEY": str(folder / "key"), "TWINOPS_AUDIT_ANCHOR_LOG": str(folder / "a.jsonl")}
        with override_settings(**keys), scratch_database("twinops_bench_audit"):
            began = time.perf_counter()
            head = _load(events)
            out["load_seconds"] = round(time.perf_counter() - began, 1)
            runs = sorted(_append(8, per_writer) for _ in range(1 if quick else 3))  # the machine's noise: its range
            out["append_events_per_s"], out["append_events_per_s_runs"] = runs[len(runs) // 2], runs
            out["append_events_per_s_1_writer"] = _append(1, per_writer // 2)
            out["append_events_per_s_flush_only"] = _flush_only(8, per_writer)
            began = time.perf_counter()
            check = audit_chain_verify()
            seconds = time.perf_counter() - began
            if not check.ok:
                raise RuntimeError(f"the benchmark chain does not verify: event {check.first_bad_id}: {check.problem}")
            out["verify_events_per_s"] = round(check.checked / seconds, 1)
            count, sql_seconds = _verify_sql()
            out["verify_events_per_s_sql_hash_and_link_only"] = round(count / sql_seconds, 1)
            out["events_in_table"] = count
            head = _loaded_head()  # pages and the export range by the loaded events' times: appends come after
            out["log_page_p95_ms"], out["log_page_p95_ms_offset"] = _pages(head, 40 if quick else 200)
            began = time.perf_counter()  # the beat signs the head every minute; the first time walks the whole chain
            audit_anchor()
            out["first_anchor_seconds"] = round(time.perf_counter() - began, 2)
            out["export_seconds_per_100k_events"], out["export_seconds_per_100k_events_copy"] = _export(
                head, export_count, folder
            )
        with override_settings(**keys), scratch_database("twinops_bench_audit_tamper"):
            (folder / "a.jsonl").unlink(missing_ok=True)
            with _as_superuser() as superuser:
                db_trials = (70 if quick else 560) if superuser else 0
                trials, detected, named = _tamper(db_trials, 70 if quick else 560, folder)
            out["tamper_trials"], out["tamper_detected"], out["tamper_first_bad_named"] = trials, detected, named
    return out
