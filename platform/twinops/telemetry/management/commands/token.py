"""`twinops token issue|revoke|list`: API tokens for machine clients (historian bridges, scripts).

Here, not in accounts: a token names the lines it may write to the telemetry API, and only an app above both
accounts and lines may check those lines exist.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from twinops.accounts.selectors import token_get, token_list
from twinops.accounts.services import token_issue, token_revoke
from twinops.lines.selectors import line_list


class Command(BaseCommand):
    help = "Issue, revoke or list API tokens. The token is printed once; only its hash is stored."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue")
        issue.add_argument("username")
        issue.add_argument("--name", required=True, help="what the token is for, e.g. 'historian bridge'")
        scope = issue.add_mutually_exclusive_group(required=True)
        scope.add_argument(
            "--line", action="append", dest="lines", metavar="KEY", help="a line it may write (repeat for more)"
        )
        scope.add_argument("--all-lines", action="store_true", help="it may write every line, also future ones")
        issue.add_argument("--reason", default="")
        revoke = sub.add_parser("revoke")
        revoke.add_argument("prefix")
        revoke.add_argument("--reason", required=True)
        sub.add_parser("list")

    def handle(self, *args: Any, **opts: Any) -> None:
        actor = "system:cli"
        if opts["action"] == "issue":
            user = User.objects.filter(username=opts["username"]).first()
            if user is None:
                raise CommandError(f"no user named {opts['username']!r}")
            lines = opts["lines"] or []
            known = set(line_list().values_list("key", flat=True))
            unknown = [key for key in lines if key not in known]
            if unknown:
                raise CommandError(f"no line {unknown[0]!r}; known lines: {', '.join(sorted(known)) or 'none'}")
            token, plaintext = token_issue(
                user=user,
                name=opts["name"],
                actor=actor,
                lines=lines,
                all_lines=opts["all_lines"],
                reason=opts["reason"],
            )
            self.stdout.write(
                f"Token for {user.username} ({token.name}, may write {token.scope()}); it is shown only now:\n"
                f"{plaintext}"
            )
        elif opts["action"] == "revoke":
            found = token_get(prefix=opts["prefix"])
            if found is None:
                raise CommandError(f"no token with prefix {opts['prefix']!r}")
            token_revoke(token=found, actor=actor, reason=opts["reason"])
            self.stdout.write(f"Revoked {found}.")
        else:
            for t in token_list():
                state = "revoked" if t.revoked_at else "active"
                self.stdout.write(f"{t.prefix}  {t.user.username:<16} {t.name:<30} {state:<8} {t.scope()}")
