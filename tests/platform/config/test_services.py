"""With DATABASE_URL set the platform uses that server; a malformed one stops start-up with a clear message."""

import os
import subprocess
import sys

import pytest

from twinops.config.embedded import parse_database_url


def test_a_socket_url_from_the_embedded_server_maps_to_django_settings() -> None:
    db = parse_database_url("postgresql://postgres:@/twinops?host=/srv/pg/run")
    assert (db["NAME"], db["USER"], db["HOST"], db["OPTIONS"]) == ("twinops", "postgres", "/srv/pg/run", {})


def test_an_external_url_keeps_host_port_credentials_and_options() -> None:
    db = parse_database_url("postgresql://app:s%40cret@db.plant:6543/twin?sslmode=require")
    assert (db["HOST"], db["PORT"], db["USER"], db["PASSWORD"], db["NAME"]) == (
        "db.plant",
        "6543",
        "app",
        "s@cret",
        "twin",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "must be a postgresql:// URL"),
        ("postgresql://u@h:5432/", "names no database"),
    ],
)
def test_a_malformed_database_url_is_refused_with_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_database_url(url)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_OWNER_URL"], autocommit=True) as conn:  # the owner may create databases
        conn.execute(sql)


def test_the_platform_uses_the_server_that_database_url_names() -> None:
    # A second database on the running server stands in for an external one.
    _admin("DROP DATABASE IF EXISTS twinops_external_check")
    _admin("CREATE DATABASE twinops_external_check")
    base = os.environ["DATABASE_URL"]
    url = base.replace("/twinops?", "/twinops_external_check?")
    assert url != base
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinops",
            "shell",
            "-c",
            "from django.db import connection; connection.ensure_connection(); "
            "print(connection.cursor().connection.execute('select current_database()').fetchone()[0])",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _admin("DROP DATABASE IF EXISTS twinops_external_check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "twinops_external_check"
