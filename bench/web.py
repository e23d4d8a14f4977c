"""Benchmark the web pages under load: 20 signed-in engineers browsing on the production server (gunicorn).

Run: `twinops bench web --json [--quick]` (Django set up by the CLI). Works in the scratch database `twinops_bench`
(see bench/ingest.py) on a two-tank line whose samples table holds ≥ 10M samples (4 tags every 10 s over ~290 days,
written in bulk with generate_series and rolled up; the last hours are a simulation put in through the ingest
service, so a real twin makes real proposals on them). The data, twin and proposals are kept between runs. The web
server is `twinops up`'s in production (gunicorn, same command line, TWINOPS_ENV=production behind a trusted TLS
proxy that the client plays). Each user signs in through the login form, then loops over: the line page with a 24 h
chart of every tag, the twin page, a proposal's review page and the recommendations page, pausing a random think
time (mean 3 s) after each. Figures:
- p95_ms / p50_ms / requests / errors (non-200 answers or failed requests, in every phase) with 20 users, and p95_ms
  per page;
- baseline_p95_ms (and per page): the same pages, one user without pauses, in the same run (each page's own time);
- health_p95_ms_under_load: /health/ while the users browse (queueing alone); no_think_p95_ms and
  no_think_requests_per_s: the 20 users without pauses (the server flat out: its capacity, not a plant's load);
- server_cpu_ms_per_request (and no_think_…): the gunicorn workers' CPU time per page served in a phase (the
  /health/ probes' few ms included), a figure other processes on the machine hardly change; beside it load_avg_1m
  at the start and end and cpu_count: where other work keeps the cores busy, the times above include waiting for one.
The 24 h chart reads the per-minute rollups (min/avg/max per bucket: ≤ 2,000 points per tag, its min-max band
shows a spike one sample long) and the figures go out as plotly.js typed arrays; plotly.js is a static file.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np

from bench.ingest import BENCH_DB, scratch_database

PERIOD_S = 10
TAGS = ("upper_level_m", "lower_level_m", "pump_flow_m3_h", "leak_m3_h")
PASSWORD = "bench-web-password-1"
SPEC = """\
schema_version: 1
line:
  id: {key}
  name: Two tanks (web bench)
  sample_period_s: 10
tags:
  - {{name: upper_level_m, role: CV, unit: m, physical_range: [-100, 100], limits: {{low: 0.2, high: 9.0}},
     safety_limits: {{high: 60}}}}
  - {{name: lower_level_m, role: CV, unit: m, physical_range: [-100, 100], limits: {{low: 0.2, high: 9.0}}}}
  - {{name: pump_flow_m3_h, role: MV, unit: m3/h, physical_range: [0, 5], limits: {{low: 0.6, high: 1.4}},
     max_move_per_step: 0.05}}
  - {{name: leak_m3_h, role: DV, unit: m3/h, physical_range: [-5, 5]}}
objective:
  terms:
    - {{tags: [lower_level_m], price: 4.0, description: product held in the lower tank}}
    - {{tags: [pump_flow_m3_h], price: -1.0, description: pumping cost}}
"""
TINY_TWIN = {  # trains in seconds: the bench measures pages, not the twin's accuracy
    "window": 8,
    "nz": 4,
    "hidden": 16,
    "depth": 1,
    "members": 3,
    "horizon": 10,
    "epochs": 3,
    "steps_per_epoch": 10,
    "batch_size": 16,
    "val_windows": 32,
    "eval_starts": 100,
    "min_train_samples": 100,
}
THINK_S = 3.0  # mean pause between an engineer's pages (exponential): reading a chart takes a few seconds
FAILED: dict[str, int] = {}  # "page status" -> count, for the figures
SIM_ROWS = 1200  # the simulated recent history (3 h 20 min at 10 s): the twin's training data and the fresh data


def _two_tanks(rows: int, seed: int) -> np.ndarray:
    """Simulate two cascaded tanks fed by a pump (steps every 20 samples) with a slow leak: (rows, 4)."""
    rng = np.random.default_rng(seed)
    pump = np.repeat(rng.uniform(0.6, 1.4, rows // 20 + 1), 20)[:rows]
    leak = 0.2 * np.tanh(np.cumsum(rng.normal(0.0, 0.02, rows)))
    x = np.zeros((rows, 2))
    x[0] = [1.0, 1.0]
    for t in range(rows - 1):
        out1 = 0.6 * np.sqrt(max(x[t, 0], 0.0))
        x[t + 1, 0] = x[t, 0] + 0.1 * (pump[t] - out1 + leak[t])
        x[t + 1, 1] = x[t, 1] + 0.1 * (out1 - 0.5 * np.sqrt(max(x[t, 1], 0.0)))
    return np.column_stack([x + rng.normal(0.0, 0.01, x.shape), pump, leak])


# --- data ---------------------------------------------------------------------------------------------------------
def _line(key: str) -> Any:
    from twinops.lines.models import Line
    from twinops.lines.services import line_mode_set
    from twinops.onboarding.services import line_onboard

    line = Line.objects.filter(key=key).first()
    if line is None:
        line = line_onboard(text=SPEC.format(key=key), filename=f"{key}.yaml", actor="system:bench").line
        line = line_mode_set(line=line, mode="advisory", actor="system:bench", reason="bench web reviews proposals")
    return line


def _bulk_history(line: Any, *, end: datetime, samples: int) -> None:
    """Write `samples` samples (4 tags every 10 s up to `end`) with generate_series, then their rollups."""
    from django.db import connection, transaction

    from twinops.telemetry import store

    steps = samples // len(TAGS)
    start = end - timedelta(seconds=PERIOD_S * steps)
    ids = dict(line.tags.values_list("name", "id"))
    tag_ids = [ids[n] for n in TAGS]
    first, last = (np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "M") for t in (start, end))
    months = np.arange(first, last + 1).astype("datetime64[us]")
    with transaction.atomic():
        store.partitions_ensure(months.astype(np.int64))
    day = timedelta(days=10)  # one statement per 10 days keeps each transaction's memory small
    at = start
    while at < end:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                """
                INSERT INTO telemetry_sample (tag_id, ts, value, quality, reason_id)
                SELECT t.id, s.ts, t.base + t.amp * sin(extract(epoch FROM s.ts) / 3600.0 + t.k) + random() * 0.05, 0,
                       NULL
                FROM unnest(%s::bigint[], %s::float8[], %s::float8[], %s::float8[]) AS t(id, base, amp, k),
                     generate_series(%s::timestamptz, %s::timestamptz - interval '1 microsecond',
                                     make_interval(secs => %s)) AS s(ts)
                ON CONFLICT DO NOTHING
                """,
                [tag_ids, [2.0, 2.0, 1.0, 0.0], [0.5, 0.5, 0.2, 0.1], [0, 1, 2, 3], at, min(at + day, end), PERIOD_S],
            )
            store.rollups_rebuild(tag_ids=tag_ids, start=at, end=min(at + day, end))
        at += day
    with connection.cursor() as cur:
        cur.execute("ANALYZE telemetry_sample")


def _recent(line: Any, *, end: datetime) -> None:
    """Put the simulated last SIM_ROWS rows up to `end` in through the ingest service (replays add nothing)."""
    from twinops.telemetry.batch import RawBatch
    from twinops.telemetry.services import samples_ingest

    values = _two_tanks(SIM_ROWS, seed=1)
    stamps = [end - timedelta(seconds=PERIOD_S * (SIM_ROWS - 1 - i)) for i in range(SIM_ROWS)]
    records = [(n, stamps[i], float(values[i, j])) for i in range(SIM_ROWS) for j, n in enumerate(TAGS)]
    samples_ingest(line=line, batch=RawBatch.from_records(records), source="bench", actor="system:bench")


def _twin(line: Any) -> None:
    """Train and promote a tiny twin on the simulated tanks, unless the line has one."""
    import dataclasses

    from twinops.modeling import services
    from twinops.modeling.datasets import LineRecord
    from twinops.modeling.models import TwinVersion
    from twins import TwinDataset, train_and_evaluate

    if TwinVersion.objects.filter(line=line).exists():
        return
    v = _two_tanks(SIM_ROWS, seed=0)
    dataset = TwinDataset.from_arrays(
        cv=v[:, :2], mv=v[:, 2:3], dv=v[:, 3:], cv_names=list(TAGS[:2]), mv_names=[TAGS[2]], dv_names=[TAGS[3]],
        sample_period_s=float(PERIOD_S),
    )  # fmt: skip
    outcome = train_and_evaluate(dataset, services.twin_config(TINY_TWIN))
    report = dataclasses.replace(outcome.report, promotable=True, reason="bench: promoted to serve pages")
    job = services.training_job_create(line=line, actor="system:bench", config_overrides=TINY_TWIN, enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    stamps = [datetime(2025, 1, 1).astimezone() + timedelta(seconds=PERIOD_S * i) for i in range(SIM_ROWS)]
    version = services.twin_version_register(
        job=job,
        record=LineRecord(dataset=dataset, timestamps=stamps),
        outcome=dataclasses.replace(outcome, report=report),
    )
    services.twin_promote(version=version, actor="system:bench", reason="bench web")


def _proposals(line: Any, now: datetime) -> list[int]:
    """Ask for a proposal now; return the ids of the line's newest proposals (up to 5)."""
    from twinops.recommendations.models import Recommendation
    from twinops.recommendations.services import recommendation_create

    recommendation_create(line=line, actor="system:bench", now=now)
    return list(Recommendation.objects.filter(line=line).order_by("-pk").values_list("pk", flat=True)[:5])


def _users(n: int) -> list[str]:
    from django.contrib.auth.models import Group, User

    names = [f"bench-web-{i:02d}" for i in range(n)]
    engineer = Group.objects.get(name="engineer")
    for name in names:
        if not User.objects.filter(username=name).exists():
            User.objects.create_user(username=name, password=PASSWORD).groups.add(engineer)
    return names


def _samples_of(line: Any) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM telemetry_sample WHERE tag_id = ANY(%s)",
            [list(line.tags.values_list("id", flat=True))],
        )
        return int(cur.fetchone()[0])


# --- server and clients -------------------------------------------------------------------------------------------
def _server(port: int) -> tuple[subprocess.Popen[bytes], Any]:
    """Start gunicorn as `twinops up` does in production, on the scratch database; return it and its log."""
    from django.test import override_settings

    from twinops import processes

    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "twinops.config.settings",
        "TWINOPS_ENV": "production",
        "TWINOPS_SECRET_KEY": secrets.token_urlsafe(64),
        "TWINOPS_ALLOWED_HOSTS": "127.0.0.1",
        "TWINOPS_TRUSTED_PROXIES": "127.0.0.1",  # the bench's client plays the TLS proxy
        "DATABASE_URL": urlunsplit(url._replace(path=f"/{BENCH_DB}")),
    }
    env.pop("DATABASE_OWNER_URL", None)
    subprocess.run(processes.twinops_cmd("collectstatic", "--noinput", "-v0"), env=env, check=True)
    with override_settings(PRODUCTION=True, TRUSTED_PROXIES=["127.0.0.1"]):
        cmd = processes.web_cmd("127.0.0.1", port)
    cmd[cmd.index("--access-logfile") + 1] = "/dev/null"  # a line per request would be the client's bottleneck
    log = (processes.log_dir() / "bench-web.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    try:
        processes.wait_listening("127.0.0.1", port, [("web", proc)], timeout_s=120)
    except BaseException:
        proc.terminate()
        proc.wait(30)
        log.close()
        raise
    return proc, log


class Browser:
    """One signed-in user: a kept-alive connection, cookies by hand (they are Secure; the 'proxy' is us)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Send one request as this user; return the status and the body."""
        head = {
            "Host": "127.0.0.1",
            "X-Forwarded-Proto": "https",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            **(headers or {}),
        }
        for attempt in (1, 2):
            reused = self.conn.sock is not None
            try:
                self.conn.request(method, path, body=body, headers=head)
                response = self.conn.getresponse()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                # The server closed a kept-alive connection as we sent on it: a browser sends again on a new one.
                if not reused or attempt == 2:
                    raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return response.status, response.read().decode("utf-8", "replace")

    def sign_in(self, username: str) -> None:
        """Sign in through the login form, as a person would."""
        status, page = self.request("GET", "/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise RuntimeError(f"login page answered {status}")
        form = urlencode({"csrfmiddlewaretoken": token.group(1), "username": username, "password": PASSWORD})
        status, _ = self.request(
            "POST", "/login/", form,
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": "https://127.0.0.1/login/"},
        )  # fmt: skip
        if status != 302:
            raise RuntimeError(f"{username} could not sign in ({status})")


def _pages(key: str, proposals: list[int]) -> list[tuple[str, str]]:
    chart = urlencode([("range", "24h"), *(("tags", t) for t in TAGS)])
    pages = [("line_24h", f"/lines/{key}/?{chart}"), ("twin", f"/twins/{key}/")]
    pages += [("recommendations", f"/recommendations/{key}/")]
    pages += [("review", f"/lines/{key}/proposals/{p}/") for p in proposals[:2]]
    return pages


def _browse(
    browser: Browser,
    pages: list[tuple[str, str]],
    until: float,
    record: Callable[[str, float, int | str], None],
    think_s: float = 0.0,
) -> None:
    """Request the pages in turn until `until`, pausing a random think time (exponential, mean think_s) after each."""
    rng = np.random.default_rng(id(browser) % 2**32)
    i = 0
    while time.perf_counter() < until:
        name, path = pages[i % len(pages)]
        i += 1
        t = time.perf_counter()
        try:
            status = browser.request("GET", path)[0]
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
        record(name, time.perf_counter() - t, status)
        if think_s:
            time.sleep(min(float(rng.exponential(think_s)), max(0.0, until - time.perf_counter())))


def _load(
    browsers: list[Browser], pages: list[tuple[str, str]], seconds: float, think_s: float = 0.0
) -> dict[str, list[float]]:
    """Have every browser loop over the pages for `seconds` at once; return each page's times (errors as NaN)."""
    times: dict[str, list[float]] = {}
    lock = threading.Lock()

    def record(name: str, elapsed: float, status: int | str) -> None:
        with lock:
            times.setdefault(name, []).append(elapsed if status == 200 else float("nan"))
            if status != 200:
                FAILED[f"{name} {status}"] = FAILED.get(f"{name} {status}", 0) + 1

    until = time.perf_counter() + seconds
    threads = [
        threading.Thread(
            target=_browse, args=(b, pages[i % len(pages) :] + pages[: i % len(pages)], until, record, think_s)
        )
        for i, b in enumerate(browsers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def _cpu_s(pid: int) -> float:
    """Return the user + system CPU seconds of a process and its children (gunicorn's workers), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # the process has gone, or this is not Linux
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total + sum(_cpu_s(int(child)) for child in children)


def _ms(values: list[float], q: float) -> float | None:
    good = [v for v in values if v == v]
    return round(float(np.percentile(np.asarray(good) * 1000, q)), 1) if good else None


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure page times with 20 users (quick: 5 users, little data) beside one user's; return the figures."""
    from django.utils import timezone

    users = 5 if quick else 20
    seconds = 8.0 if quick else 90.0
    samples = 100_000 if quick else 10_000_000
    key = "bench-web-quick" if quick else "bench-web"
    FAILED.clear()
    with scratch_database():
        started = time.perf_counter()
        line = _line(key)
        now = timezone.now().replace(microsecond=0)
        recent_end = now - timedelta(seconds=now.second % PERIOD_S)
        if _samples_of(line) < samples:
            _bulk_history(line, end=recent_end - timedelta(seconds=PERIOD_S * SIM_ROWS), samples=samples)
        _recent(line, end=recent_end)
        _twin(line)
        proposals = _proposals(line, now=recent_end + timedelta(seconds=5))
        names = _users(users)
        total = _samples_of(line)
        prepare_s = time.perf_counter() - started
        port = 18_000 + os.getpid() % 1000
        proc, log = _server(port)
        try:
            pages = _pages(key, proposals)
            browsers = [Browser(port) for _ in names]
            for b, name in zip(browsers, names, strict=True):
                b.sign_in(name)
            _load(browsers[:8], pages, 4.0)  # every page on every gunicorn worker once: caches (the twin) warm
            baseline = _load(browsers[:1], pages, seconds / 4)
            health = Browser(port)
            health_times: list[float] = []

            def health_record(_name: str, elapsed: float, status: int | str) -> None:
                health_times.append(elapsed if status == 200 else float("nan"))

            # /health/ every ~0.5 s while the users browse: the server's queueing alone, without a page's work
            probe_args = (health, [("health", "/health/")], time.perf_counter() + seconds, health_record, 0.5)
            probe = threading.Thread(target=_browse, args=probe_args)
            probe.start()
            load_start = os.getloadavg()[0]
            loaded_started, cpu_started = time.perf_counter(), _cpu_s(proc.pid)
            loaded = _load(browsers, pages, seconds, think_s=THINK_S)
            loaded_s, loaded_cpu_s = time.perf_counter() - loaded_started, _cpu_s(proc.pid) - cpu_started
            probe.join()
            cpu_started = _cpu_s(proc.pid)
            saturated = _load(browsers, pages, seconds / 4)  # no think time: what the server does flat out
            saturated_cpu_s = _cpu_s(proc.pid) - cpu_started
            load_end = os.getloadavg()[0]
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    every = [v for values in loaded.values() for v in values]
    flat_out = [v for values in saturated.values() for v in values]
    base = [v for values in baseline.values() for v in values]
    figures: dict[str, Any] = {
        "users": users,
        "think_s_mean": THINK_S,
        "load_s": seconds,
        "samples_in_table": total,
        "prepare_s": round(prepare_s, 1),
        "requests": len(every),
        "requests_per_s": round(len(every) / loaded_s, 1),
        "errors": sum(1 for v in [*every, *flat_out, *base, *health_times] if v != v),
        "failed": dict(FAILED),
        "p50_ms": _ms(every, 50),
        "p95_ms": _ms(every, 95),
        "baseline_users": 1,
        "baseline_p95_ms": _ms(base, 95),
        "health_p95_ms_under_load": _ms(health_times, 95),
        "no_think_p95_ms": _ms(flat_out, 95),
        "no_think_requests_per_s": round(len(flat_out) / (seconds / 4), 1),
        "gunicorn_workers": min(4, os.cpu_count() or 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_start": round(load_start, 2),
        "load_avg_1m_end": round(load_end, 2),
        "server_cpu_ms_per_request": round(1000 * loaded_cpu_s / max(1, len(every)), 1),
        "no_think_server_cpu_ms_per_request": round(1000 * saturated_cpu_s / max(1, len(flat_out)), 1),
        "target_p95_ms": 150,
    }
    for name, values in sorted(loaded.items()):
        figures[f"p95_ms_{name}"] = _ms(values, 95)
        figures[f"baseline_p95_ms_{name}"] = _ms(baseline.get(name, []), 95)
    return figures


if __name__ == "__main__":
    import argparse
    import json

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinops.config.settings")
    django.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick)))
