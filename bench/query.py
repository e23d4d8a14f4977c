"""Benchmark the dashboard's telemetry reads on a samples table holding at least 10M samples.

Run: `twinops bench query --json [--quick]` (Django set up by the CLI). Uses the scratch database `twinops_bench`
(see bench/ingest.py); the data (20 tags at 1 s for 6 days = 10.4M samples, loaded through the ingest service so the
rollups exist) is kept between runs and loaded only when missing. Figures, over random tags and windows:
- p95_ms_chart_24h: `chart_series` of one tag over 24 h with max_points=2000 (served by the minute rollups);
- p95_ms_raw_1h: `chart_series` of one tag over 1 h of raw samples (3600 rows);
- p95_ms_training_window_1h_all_tags: `training_window` of all 20 tags over 1 h at 1 s (for the twin trainers).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import numpy as np

from bench.ingest import T0, bench_line, scratch_database, synthetic_batches

N_TAGS = 20


def _load(line: Any, seconds: int, n_tags: int) -> int:
    from django.db import connection

    from twinops.telemetry.services import samples_ingest

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id WHERE t.line_id = %s",
            [line.pk],
        )
        have = int(cur.fetchone()[0])
    if have < n_tags * seconds:
        for batch in synthetic_batches(n_tags=n_tags, seconds=seconds, batch_samples=500_000):
            samples_ingest(line=line, batch=batch, source="bench", actor=None)
        with connection.cursor() as cur:
            cur.execute("ANALYZE telemetry_sample")
            cur.execute(
                "SELECT count(*) FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id WHERE t.line_id = %s",
                [line.pk],
            )
            have = int(cur.fetchone()[0])
    return have


def _p(times: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(times) * 1000, q)), 2)


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure chart and raw reads on a ≥10M-sample table (quick: a small one); return the figures."""
    from twinops.lines.models import Tag
    from twinops.telemetry.selectors import chart_series, training_window

    seconds = 90_000 if quick else 6 * 86_400  # quick: 25 h of 2 tags (180k samples)
    n_tags = 2 if quick else N_TAGS
    repeats = 20 if quick else 200
    rng = np.random.default_rng(1)
    with scratch_database():
        line = bench_line("bench-query-quick" if quick else "bench-query", n_tags)
        started = time.perf_counter()
        total = _load(line, seconds, n_tags)
        load_s = time.perf_counter() - started  # counting (and loading when missing)
        tags = list(Tag.objects.filter(line=line).select_related("line"))
        figures: dict[str, Any] = {"samples_in_table": total, "prepare_s": round(load_s, 1)}
        for name, span, max_points, source in (
            ("chart_24h", timedelta(hours=24), 2000, "rollup_minute"),
            ("raw_1h", timedelta(hours=1), 3600, "raw"),
        ):
            latest = seconds - span.total_seconds()
            times = []
            for i in range(repeats + 5):
                tag = tags[int(rng.integers(len(tags)))]
                start = T0 + timedelta(seconds=int(rng.integers(0, latest)))
                t = time.perf_counter()
                series = chart_series(tag=tag, start=start, end=start + span, max_points=max_points)
                if i >= 5:  # the first few warm the caches
                    times.append(time.perf_counter() - t)
                assert series.source == source, series.source
            figures[f"p50_ms_{name}"], figures[f"p95_ms_{name}"] = _p(times, 50), _p(times, 95)
            figures[f"points_{name}"] = len(series.times)
        times = []
        for _ in range(max(5, repeats // 10)):
            start = T0 + timedelta(seconds=int(rng.integers(0, seconds - 3600)))
            t = time.perf_counter()
            training_window(line=line, start=start, end=start + timedelta(hours=1))  # all tags, raw at 1 s
            times.append(time.perf_counter() - t)
        figures["p95_ms_training_window_1h_all_tags"] = _p(times, 95)
    figures.update(target_p95_ms_chart_24h=100, target_p95_ms_raw_1h=50)
    return figures


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
