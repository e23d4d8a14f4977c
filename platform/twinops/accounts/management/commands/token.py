"""`twinops token issue|revoke|list`: API tokens for machine clients (historian bridges, scripts)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from twinops.accounts.selectors import token_get, token_list
from twinops.accounts.services import token_issue, token_revoke


class Command(BaseCommand):
    help = "Issue, revoke or list API tokens. The token is printed once; only its hash is stored."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue")
        issue.add_argument("username")
        issue.add_argument("--name", required=True, help="what the token is for, e.g. 'historian bridge'")
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
            token, plaintext = token_issue(user=user, name=opts["name"], actor=actor, reason=opts["reason"])
            self.stdout.write(f"Token for {user.username} ({token.name}); it is shown only now:\n{plaintext}")
        elif opts["action"] == "revoke":
            found = token_get(prefix=opts["prefix"])
            if found is None:
                raise CommandError(f"no token with prefix {opts['prefix']!r}")
            token_revoke(token=found, actor=actor, reason=opts["reason"])
            self.stdout.write(f"Revoked {found}.")
        else:
            for t in token_list():
                state = "revoked" if t.revoked_at else "active"
                self.stdout.write(f"{t.prefix}  {t.user.username:<16} {t.name:<30} {state}")
