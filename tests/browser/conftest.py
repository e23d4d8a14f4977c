"""Browser tests: Debian's Chromium driven by Playwright, and a real Celery worker for the ingest queue."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import kombu.pools
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
BROKER_DB = 7  # a Redis database of its own: queued tasks of other test runs never reach this worker, nor ours theirs


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start Debian's Chromium headless (Playwright's own browser download is never used: no network)."""
    # Playwright's sync API keeps an event loop running in this thread; Django would then refuse the test's own
    # (synchronous, single-threaded) ORM calls as if they came from async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # While Playwright runs, the test's ORM calls get a database connection of their own (asgiref's context-local
        # storage sees another context): close it here, or it would keep the test database from being dropped.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def ingest_worker(live_server: Any) -> Iterator[Any]:
    """Run a real Celery worker (solo pool, in a thread) on the ingest queue, against the live server's test database."""
    from celery.contrib.testing.worker import start_worker

    from twinops.config.celery import app

    shared = app.conf.broker_url
    separator = "&" if "?" in shared else "?"
    _broker_use(app, f"{shared}{separator}virtual_host={BROKER_DB}")
    try:
        with start_worker(app, pool="solo", queues=["ingest"], perform_ping_check=False, loglevel="WARNING") as worker:
            yield worker
    finally:
        _broker_use(app, shared)
        _close_other_sessions()


def _broker_use(app: Any, url: str) -> None:
    """Point the Celery app at another broker URL, dropping connection pools made for the old one."""
    app.conf.broker_url = url
    # kombu keeps one pool per URL for the whole process: closing only ours would leave a closed pool registered
    # for the old URL, and every later send to it would fail ("Acquire on closed pool"). Reset them all, as
    # Celery does after a fork.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def _close_other_sessions() -> None:
    """End the stopped worker thread's database session, which would keep the test database from being dropped."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
