"""`twinops audit verify [--from --to] [--public-key HEX]`, `audit key` and `audit export --from --to [--line] OUT`.

It lives in the auditing app (above releases) because an export reads every app's side of the decision chain.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

from twinops.audit import conf
from twinops.audit.anchors import AnchorKeyError, public_key_from_hex, public_key_hex, signing_key
from twinops.audit.selectors import audit_id_range
from twinops.audit.services import audit_verify
from twinops.auditing.services import ExportRefused, audit_export
from twinops.core.actors import Actor
from twinops.lines.models import Line
from twinops.lines.selectors import line_get


def _when(raw: str | None, option: str) -> datetime | None:
    if raw is None:
        return None
    value = parse_datetime(raw)
    if value is None:
        day = parse_date(raw)
        if day is None:
            raise CommandError(f"{option} {raw!r} is not an ISO date or date-time (e.g. 2026-03-01T00:00:00Z)")
        value = datetime.combine(day, time.min)
    return make_aware(value, UTC) if is_naive(value) else value


class Command(BaseCommand):
    help = "Verify the audit chain against its signed anchors, or print the anchors' public key."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="check the database chain against the anchor log")
        verify.add_argument("--from", dest="start", help="ISO date or date-time: first event's time (default: first)")
        verify.add_argument("--to", dest="end", help="ISO date or date-time, exclusive (default: the head)")
        verify.add_argument("--public-key", help="the anchors' Ed25519 public key in hex (default: the key file's)")
        sub.add_parser("key", help="print the public key that verifies the anchors (creates the key if missing)")
        export = sub.add_parser("export", help="write a bundle (zip) of a range's events and decisions, with verify.py")
        export.add_argument("--from", dest="start", help="ISO date or date-time: first event's time (default: first)")
        export.add_argument("--to", dest="end", help="ISO date or date-time, exclusive (default: now)")
        export.add_argument("--line", help="a line's key: only its proposals in decisions.csv and the report")
        export.add_argument("--as", dest="username", help="act as this user (default: the shell user, as cli:NAME)")
        export.add_argument("out", help="the zip file to write")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            if opts["action"] == "key":
                self.stdout.write(public_key_hex(signing_key(conf.signing_key_path(), create=True)))
                return
            if opts["action"] == "export":
                self._export(opts)
                return
            self._verify(opts)
        except AnchorKeyError as exc:
            raise CommandError(str(exc)) from None

    def _verify(self, opts: dict[str, Any]) -> None:
        try:
            key = public_key_from_hex(opts["public_key"]) if opts["public_key"] else None
        except ValueError as exc:
            raise CommandError(f"--public-key: {exc}") from None
        start, end = _when(opts["start"], "--from"), _when(opts["end"], "--to")
        from_id, to_id = audit_id_range(start=start, end=end)
        check = audit_verify(from_id=from_id, to_id=to_id, public_key=key)
        if not check.ok:
            where = f"event {check.first_bad_id}" if check.first_bad_id else "anchor log"
            raise CommandError(f"audit chain NOT verified: {where}: {check.problem}")
        if check.anchored_through is None:
            self.stdout.write(
                f"{check.checked} events verified; WARNING: no signed anchor covers them yet "
                f"(anchor log {conf.anchor_log_path()})"
            )
            return
        self.stdout.write(
            f"{check.checked} events verified; anchored through event {check.anchored_through} "
            f"(signed at {check.anchored_at})"
        )

    def _export(self, opts: dict[str, Any]) -> None:
        start, end = _when(opts["start"], "--from"), _when(opts["end"], "--to")
        if start is not None and end is not None and end <= start:
            raise CommandError(f"--to {opts['end']} must be after --from {opts['start']}")
        out = Path(opts["out"])
        if out.is_dir() or not out.parent.is_dir():
            raise CommandError(f"OUT {opts['out']!r} must be a file path in an existing folder")
        if opts["line"]:
            try:
                line_get(key=opts["line"])
            except Line.DoesNotExist:
                raise CommandError(f"--line {opts['line']!r}: there is no line with this key") from None
        try:
            actor = Actor.from_username(opts["username"]) if opts["username"] else f"cli:{getpass.getuser()}"
            result = audit_export(actor=actor, start=start, end=end, line_key=opts["line"], out=out)
        except (ExportRefused, LookupError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        span = "no events" if result.first_id is None else f"events {result.first_id} to {result.last_id}"
        self.stdout.write(
            f"wrote {out}: {span}, {result.proposals} proposals; export event {result.export_event_id}, anchored "
            f"through event {result.anchored_through}; public key {result.public_key}\n"
            f"check it with: python verify.py {out}  (verify.py is inside the bundle)"
        )
