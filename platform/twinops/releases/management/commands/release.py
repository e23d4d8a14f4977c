"""`twinops release status LINE` / `twinops release stop LINE --reason …`: see or stop the line's release."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from twinops.core.actors import Actor
from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.releases.selectors import release_alarm, release_latest, release_no_plc, release_writes
from twinops.releases.services import release_stop


class Command(BaseCommand):
    help = "Show a line's latest release with each write and its read-back, or stop the running one (setpoints held)."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="the line's latest release, its writes and any alarm")
        status.add_argument("line")
        stop = sub.add_parser("stop", help="stop the running release: nothing more is written, setpoints held")
        stop.add_argument("line")
        stop.add_argument("--reason", required=True)
        stop.add_argument(
            "--as", "--user", dest="username", help="act as this user (default: the shell user, as cli:NAME)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            line = line_get(key=opts["line"])
        except Line.DoesNotExist:
            raise CommandError(f"no line {opts['line']!r}") from None
        if opts["action"] == "stop":
            try:
                actor = (
                    Actor.from_username(opts["username"]) if opts["username"] else Actor.of(f"cli:{getpass.getuser()}")
                )
                release = release_stop(line=line, actor=actor, reason=opts["reason"])
            except (LookupError, ValueError, PermissionDenied) as e:
                raise CommandError(str(e)) from None
            self.stdout.write(
                f"Release of proposal {release.recommendation_id} stopped after {release.steps_done} of {release.steps} steps; setpoints held."
            )
            return
        self._status(line)

    def _status(self, line: Line) -> None:
        no_plc = release_no_plc(line=line)
        if no_plc:
            self.stdout.write(f"{line.key}: {no_plc}.")
        release = release_latest(line=line)
        if release is None:
            self.stdout.write(f"{line.key}: no release yet (line mode {line.mode}).")
            return
        self.stdout.write(
            f"{line.key}: release of proposal {release.recommendation_id} {release.status}, "
            f"{release.steps_done} of {release.steps} steps, started {release.started_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f", ended {release.ended_at:%Y-%m-%d %H:%M:%S} UTC" if release.ended_at else "")
        )
        if release.reason:
            self.stdout.write(f"  reason: {release.reason}")
        alarm = release_alarm(line=line)
        if alarm is not None:
            self.stdout.write(f"  ALARM: {alarm.message}")
        for w in release_writes(release=release):
            read = "—" if w.read_back is None else f"{w.read_back:,.6g}"
            when = f"{w.written_at:%H:%M:%S}" if w.written_at else "not written"
            self.stdout.write(
                f"  step {w.step:>3} {w.tag:<16} {w.value:>12,.6g} → read {read:>12}  {w.status:<8} {when} {w.error}"
            )
