"""Database roles: the platform connects as a role that owns nothing it must not change; another role migrates.

- The owner role (`twinops_owner`; `DATABASE_OWNER_URL`) owns the database, its tables, the audit table and its
  triggers, and runs the migrations: the `migrate` command switches to it (`database_owner`), then gives the
  application's role its privileges (`privileges_grant`).
- The application's role (`twinops_app`; `DATABASE_URL`) is no superuser: SELECT, INSERT, UPDATE and DELETE on the
  tables, only SELECT and INSERT on the append-only ones (the audit log), and ownership of the samples table alone,
  whose monthly partitions it attaches and drops at run time. It cannot update, delete or truncate audit events,
  disable or drop their triggers, or set `session_replication_role`.

The embedded server is set up so on every start (`embedded_roles_ensure`), including a data directory made before
these roles existed (everything then belonged to the superuser): the roles, their passwords (generated into
`TWINOPS_HOME/postgres-auth/<role>.pgpass`, 0600, named in the URLs as libpq `passfile`s so that no password is in
a URL, an environment or a log), and password authentication (scram-sha-256) for every connection instead of trust.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from twinops.config.secret_files import secret_file_text

SUPERUSER = "postgres"  # the embedded server's bootstrap superuser: used only to set up the roles
OWNER_ROLE = "twinops_owner"
APP_ROLE = "twinops_app"
# Tables the application may only read and append to (audit: the tamper-evident log).
APPEND_ONLY_TABLES = ("audit_auditevent",)
# Tables the application owns, with their partitions, because it changes their shape at run time (telemetry: the
# samples table, whose monthly partitions an ingest attaches and an ingest that rolled back drops again).
APP_OWNED_TABLES = ("telemetry_sample",)

HBA_MARK = "# Written by TwinOps (config/database_roles.py): every connection authenticates with a password."
HBA = f"""{HBA_MARK}
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
"""


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...  # noqa: D102

    def fetchone(self) -> Any: ...  # noqa: D102

    def fetchall(self) -> Any: ...  # noqa: D102


def passfile(home: Path, role: str) -> Path:
    """Return the role's libpq password file in `home`, generating its password (0600, once) if absent."""
    path = home / "postgres-auth" / f"{role}.pgpass"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    secret_file_text(path, lambda: f"*:*:*:{role}:{secrets.token_urlsafe(32)}\n")
    return path


def _password(path: Path) -> str:
    return path.read_text().strip().rsplit(":", 1)[1]


def embedded_url(*, home: Path, socket_dir: str, database: str, role: str) -> str:
    """Return the `postgresql://` URL of a role on the embedded server, its password in a passfile."""
    return f"postgresql://{role}@/{database}?host={quote(socket_dir)}&passfile={quote(str(passfile(home, role)))}"


def embedded_roles_ensure(*, home: Path, pgdata: Path, socket_dir: str, database: str) -> None:
    """Set up the roles, passwords, password authentication and the database on the embedded server (idempotent).

    Upgrades a server set up before (trust authentication, everything owned by the superuser): the roles are made,
    the database and its objects pass to the owner, the application's role gets its privileges.
    """
    import psycopg

    files = {role: passfile(home, role) for role in (SUPERUSER, OWNER_ROLE, APP_ROLE)}
    params: dict[str, Any] = {"host": socket_dir, "user": SUPERUSER, "passfile": str(files[SUPERUSER])}
    try:
        admin = psycopg.connect(dbname="postgres", autocommit=True, **params)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"cannot log in to the embedded PostgreSQL as {SUPERUSER}: its password in {files[SUPERUSER]} is missing "
            f"or wrong ({str(exc).strip()})"
        ) from exc
    with admin:
        _roles_ensure(admin, files)
        upgrade = _database_ensure(admin, database)
        hba = pgdata / "pg_hba.conf"
        if hba.read_text() != HBA:
            hba.write_text(HBA)  # in place: the file keeps its owner (the server's system user)
            admin.execute("SELECT pg_reload_conf()")
    if upgrade:
        with (
            psycopg.connect(dbname=database, autocommit=True, **params) as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            _objects_reassign(cur)
            privileges_grant_sql(cur, APP_ROLE)


def _roles_ensure(admin: Any, files: dict[str, Path]) -> None:
    from psycopg import sql

    attributes = {SUPERUSER: "", OWNER_ROLE: "CREATEDB", APP_ROLE: ""}  # the owner creates the tests' databases
    for role, path in files.items():
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE " + attributes[role]).format(
                    sql.Identifier(role)
                )
            )
        admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(_password(path))))
    # The owner may act as the application's role: it alters the samples table the application owns when migrating.
    if not admin.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE r.rolname = %s AND u.rolname = %s",
        [APP_ROLE, OWNER_ROLE],
    ).fetchone():
        admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_ROLE), sql.Identifier(OWNER_ROLE)))


def _database_ensure(admin: Any, database: str) -> bool:
    """Create the database owned by the owner role, or hand it (and the tests' databases) over; True if handed over."""
    from psycopg import sql

    row = admin.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [database]).fetchone()
    if row is None:
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(OWNER_ROLE))
        )
        return False
    upgrade = row[0] != OWNER_ROLE
    # The suite's throw-away databases (test_*) from before: the owner role drops and recreates them.
    stale = admin.execute(
        "SELECT datname FROM pg_database WHERE (datname = %s OR datname LIKE 'test\\_%%') "
        "AND pg_get_userbyid(datdba) <> %s",
        [database, OWNER_ROLE],
    ).fetchall()
    for (name,) in stale:
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(OWNER_ROLE)))
    return upgrade


def _objects_reassign(cur: Cursor) -> None:
    """Hand what the superuser made in the schema (tables, views, sequences, functions) over to the owner role."""
    cur.execute(
        """SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 ELSE 'TABLE' END, quote_ident(c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relowner = %s::regrole
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                              AND d.deptype IN ('a', 'i'))""",  # a column's own sequence follows its table
        [SUPERUSER],
    )
    for kind, name in cur.fetchall():
        cur.execute(f"ALTER {kind} {name} OWNER TO {OWNER_ROLE}")
    cur.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.proowner = %s::regrole",
        [SUPERUSER],
    )
    for (signature,) in cur.fetchall():
        cur.execute(f"ALTER ROUTINE {signature} OWNER TO {OWNER_ROLE}")


def privileges_grant_sql(cur: Cursor, app_role: str) -> None:
    """Give the application's role its privileges on every table of the schema, as the owner (or a superuser)."""
    role = _ident(app_role)
    cur.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")  # CREATE: the samples table's new partitions
    cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    cur.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    # e.g. audit_append, which runs with the caller's rights: explicit, should a DBA revoke EXECUTE from PUBLIC
    cur.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}")
    for table in APPEND_ONLY_TABLES:
        if _exists(cur, table):
            cur.execute(f"REVOKE ALL ON {table} FROM {role}, PUBLIC")
            cur.execute(f"GRANT SELECT, INSERT ON {table} TO {role}")
    for table in APP_OWNED_TABLES:
        if not _exists(cur, table):
            continue
        cur.execute(
            "SELECT quote_ident(c.relname) FROM pg_class c WHERE (c.oid = %s::regclass OR c.oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)) AND pg_get_userbyid(c.relowner) <> %s",
            [table, table, app_role],
        )
        for (name,) in cur.fetchall():
            cur.execute(f"ALTER TABLE {name} OWNER TO {role}")


def _exists(cur: Cursor, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
    return bool(cur.fetchone()[0])


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def privileges_grant(alias: str = "default") -> None:
    """Give the application's role its privileges after migrating; nothing when the migration ran as that role."""
    from django.conf import settings
    from django.db import connections, transaction

    app_role = str(settings.DATABASES[alias]["USER"])
    conn = connections[alias]
    with transaction.atomic(using=alias), conn.cursor() as cur:
        cur.execute("SELECT current_user")
        if cur.fetchone()[0] == app_role or not app_role:
            return
        privileges_grant_sql(cur, app_role)


@contextmanager
def database_owner(alias: str = "default") -> Iterator[None]:
    """Connect `alias` as the owner role (`settings.DATABASE_OWNER`) inside the block; as it was without one."""
    from django.conf import settings
    from django.db import connections

    owner = getattr(settings, "DATABASE_OWNER", None)
    conn = connections[alias]
    current = conn.settings_dict
    if not owner or alias != "default" or current.get("USER") == owner["USER"]:
        yield  # no owner configured, or already connected as it
        return
    conn.close()
    conn.settings_dict = {
        **current,
        **{key: owner[key] for key in ("HOST", "PORT", "USER", "PASSWORD")},
        "OPTIONS": dict(owner["OPTIONS"]),
    }
    try:
        yield
    finally:
        conn.close()
        current["NAME"] = conn.settings_dict["NAME"]  # a test database created or dropped in the block
        conn.settings_dict = current
