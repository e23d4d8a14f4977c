"""The `twinops` command: every Django management command plus TwinOps's own (`up`, `worker`, `bench`, …).

On the embedded database (no DATABASE_URL given) a command first applies the migrations it lacks, so that a fresh
TWINOPS_HOME works from the first command on. A given DATABASE_URL is never migrated implicitly.
"""

from __future__ import annotations

import os
import sys

import django
from django.core.management import call_command, execute_from_command_line
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# Commands that need no migrated database, or migrate it themselves.
NO_MIGRATION_FIRST = frozenset(
    {
        "help",
        "version",
        "migrate",
        "makemigrations",
        "showmigrations",
        "sqlmigrate",
        "squashmigrations",
        "optimizemigration",
        "up",
        "demo",
    }
)


def main(argv: list[str] | None = None) -> None:
    """Run a management command; `twinops help` lists them."""
    args = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinops.config.settings")
    embedded = not os.environ.get("DATABASE_URL")  # read before the settings start the embedded server and set it
    asks_help = not args or args[0].startswith("-") or bool({"-h", "--help"} & set(args))
    if embedded and not asks_help and args[0] not in NO_MIGRATION_FIRST:
        embedded_database_migrate()
    execute_from_command_line(["twinops", *args])


def embedded_database_migrate() -> None:
    """Apply the migrations the embedded database lacks, saying so on stderr; do nothing when it is up to date."""
    django.setup()
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        print(f"Preparing the embedded database: applying {len(plan)} migrations…", file=sys.stderr)
        call_command("migrate", interactive=False, verbosity=0)
