"""`twinops user add NAME --role ROLE`: create a user in a role (password read from stdin or prompted);
`twinops user role NAME --role ROLE --reason …`: move a user to another role (audited)."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from twinops.accounts.services import user_create, user_role_set
from twinops.core.actors import Actor
from twinops.core.roles import ROLES


class Command(BaseCommand):
    help = "Create a user in one of the roles: " + ", ".join(ROLES)

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add")
        add.add_argument("username")
        add.add_argument("--role", required=True, choices=sorted(ROLES))
        add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        role = sub.add_parser("role")
        role.add_argument("username")
        role.add_argument("--role", required=True, choices=sorted(ROLES))
        role.add_argument("--reason", required=True, help="why the role changes (kept in the audit log)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["action"] == "role":
            self._role(**opts)
            return
        password = sys.stdin.readline().rstrip("\n") if opts["password_stdin"] else _prompt_password()
        try:
            user = user_create(
                username=opts["username"],
                role=opts["role"],
                password=password,
                actor="system:cli",
                reason="created with twinops user add",
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created {user.username} ({opts['role']}).")

    def _role(self, *, username: str, role: str, reason: str, **_: Any) -> None:
        try:
            user_role_set(user=Actor.from_username(username).user, role=role, actor="system:cli", reason=reason)
        except (LookupError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{username} is now in the role {role}.")


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password: give it on standard input with --password-stdin")
    try:
        return getpass.getpass("Password: ")
    except EOFError:
        raise CommandError("no password given") from None
