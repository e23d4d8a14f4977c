"""`twinops proposal list|show|approve|reject`: review a line's proposals and sign them from a terminal."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from twinops.core.actors import Actor
from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.recommendations.management.commands.recommend import summary
from twinops.recommendations.models import Recommendation
from twinops.recommendations.selectors import recommendation_by_id, recommendations_for_line
from twinops.recommendations.services import SigningError, proposal_sign


class Command(BaseCommand):
    help = "List and show proposals; approve or reject one with your password (prompted, or read from stdin)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,show,approve,reject}")
        listing = sub.add_parser("list", help="List a line's recent proposals, newest first.")
        listing.add_argument("line", help="line key")
        listing.add_argument("--limit", type=int, default=20)
        show = sub.add_parser("show", help="Show one proposal: moves, predictions, signatures (JSON).")
        show.add_argument("id", type=int)
        for name, meaning in (("approve", "approve it for release"), ("reject", "reject it")):
            p = sub.add_parser(name, help=f"Sign a pending proposal to {meaning}.")
            p.add_argument("id", type=int)
            p.add_argument("--as", dest="username", required=True, help="your username: a signature is a person's")
            p.add_argument("--reason", default="", required=name == "reject", help="why (required to reject)")
            if name == "approve":
                p.add_argument("--scale", type=float, default=1.0, help="approve smaller moves: 0 < scale <= 1")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, f"_{opts['action']}")(**opts)

    def _list(self, *, line: str, limit: int, **_: Any) -> None:
        try:
            row = line_get(key=line)
        except Line.DoesNotExist:
            raise CommandError(f"no line {line!r}") from None
        recs = recommendations_for_line(line=row, limit=limit)
        if not recs:
            self.stdout.write(f"Line {row.key} ({row.mode} mode) has no proposals yet.")
            return
        self.stdout.write(f"{'id':>7}  {'status':<9} {'made (UTC)':<19}  {'gain/h':>10}  reason")
        for r in recs:
            gain = f"{r.expected_gain:,.2f}" if r.has_proposal and r.expected_gain is not None else "–"
            made = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            self.stdout.write(f"{r.pk:>7}  {r.status:<9} {made:<19}  {gain:>10}  {r.reason[:80]}")

    def _show(self, *, id: int, **_: Any) -> None:
        rec = _proposal(id)
        data = summary(rec) | {
            "mode": rec.line.mode,
            "signatures": [
                {
                    "username": s.username,
                    "full_name": s.full_name,
                    "meaning": s.get_meaning_display(),
                    "signed_at": s.signed_at.isoformat(),
                    "reason": s.reason,
                    "scale": s.scale,
                    "content_sha256": s.content_sha256,
                }
                for s in rec.signatures.all()
            ],
        }
        self.stdout.write(json.dumps(data, indent=2))

    def _approve(self, **opts: Any) -> None:
        self._sign("approve", **opts)

    def _reject(self, **opts: Any) -> None:
        self._sign("reject", **opts)

    def _sign(self, decision: str, *, id: int, username: str, reason: str, scale: float = 1.0, **_: Any) -> None:
        try:
            actor = Actor.from_username(username)
        except LookupError as e:
            raise CommandError(str(e)) from None
        password = _password(username)
        try:
            rec = proposal_sign(
                recommendation_id=id,
                actor=actor,
                password=password,
                decision=decision,
                reason=reason,
                scale=scale,
                client="cli",
            )
        except (SigningError, PermissionDenied) as e:
            raise CommandError(str(e)) from None
        if rec.status == "pending":
            self.stdout.write(self.style.SUCCESS(f"Signed proposal {rec.pk}; a second engineer must sign it too."))
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Proposal {rec.pk} is {rec.get_status_display()} (signed by {username}).")
            )


def _proposal(pk: int) -> Recommendation:
    try:
        return recommendation_by_id(pk=pk)
    except Recommendation.DoesNotExist:
        raise CommandError(f"no proposal {pk}") from None


def _password(username: str) -> str:
    """Prompt for the signer's password on a terminal; read one line from stdin otherwise (scripted tests)."""
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {username}: ")
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no password on stdin: pipe it in, or run in a terminal to be prompted")
    return line.rstrip("\n")
