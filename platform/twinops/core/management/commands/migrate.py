"""`migrate` as the owner role: the tables belong to it, and the application's role gets only its privileges."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.commands import migrate

from twinops.config.database_roles import database_owner, privileges_grant


class Command(migrate.Command):
    help = migrate.Command.help + " Runs as the owner role (DATABASE_OWNER_URL) and grants the application's role."

    def handle(self, *args: Any, **options: Any) -> None:
        """Migrate connected as the owner role, then grant the application's role its privileges."""
        if settings.DATABASE_OWNER is None:
            print(
                "DATABASE_OWNER_URL is not set: migrating as the application's role, which then owns the audit table "
                "and could alter it (see the README's Configuration)",
                file=sys.stderr,
            )
        with database_owner(options["database"]):
            super().handle(*args, **options)
            privileges_grant(options["database"])
