"""`twinops line onboard|list|show|update|mode`: thin wrapper over the onboarding and lines services and selectors.

It lives in the onboarding app, not in lines, because `onboard --history` imports telemetry, which sits above lines.
"""

from __future__ import annotations

import getpass
from argparse import ArgumentParser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from twinops.core.actors import Actor
from twinops.core.progress import ProgressBar
from twinops.lines.models import Line
from twinops.lines.selectors import line_get, line_list, line_tags, spec_diff, spec_versions
from twinops.lines.services import SpecError, SpecUnchangedError, line_mode_set, spec_version_create
from twinops.onboarding.services import line_onboard
from twinops.telemetry.reports import rejections_csv_write
from twinops.telemetry.services import HistoryFileError, ImportResult, Rejection

REJECTIONS_SHOWN = 5  # rejections printed to the terminal; the CSV report holds them all


class Command(BaseCommand):
    help = "Onboard production lines from spec files (with history), list and show them, and version their specs."
    requires_system_checks: list[str] = []  # onboarding must not fail on an unrelated URL or template check

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{onboard,list,show,update,mode}")
        onboard = sub.add_parser("onboard", help="Validate a spec and create its line; optionally import history.")
        onboard.add_argument("spec", type=Path, help="line spec, YAML or JSON (docs/line-spec.md)")
        onboard.add_argument("--history", type=Path, help="history file: CSV or Parquet, wide or long")
        onboard.add_argument("--reason", default="", help="why the line is onboarded (kept in the audit log)")
        onboard.add_argument("--as", dest="username", help="act as this user (default: the shell user, as cli:NAME)")
        onboard.add_argument(
            "--rejections-out",
            type=Path,
            help="where to write the rejection report CSV (default: beside the history file)",
        )
        sub.add_parser("list", help="List lines with their tag counts by role.")
        show = sub.add_parser("show", help="Show a line's tags and spec versions.")
        show.add_argument("key")
        update = sub.add_parser("update", help="Make a new spec version of a line from a changed spec.")
        update.add_argument("key")
        update.add_argument("spec", type=Path)
        update.add_argument("--reason", required=True, help="why the spec changes (required; audited)")
        update.add_argument("--as", dest="username", help="act as this user (default: the shell user, as cli:NAME)")

        mode = sub.add_parser("mode", help="Switch a line off, to shadow (commissioning) or to advisory.")
        mode.add_argument("key")
        mode.add_argument("mode", choices=list(Line.Mode.values))
        mode.add_argument("--reason", required=True, help="why the mode changes (required; audited)")
        mode.add_argument("--as", dest="username", help="act as this user (default: the shell user, as cli:NAME)")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(**options)

    def _mode(self, *, key: str, mode: str, reason: str, username: str | None, **_: Any) -> None:
        actor, line = _actor(username), _line(key)
        try:
            line = line_mode_set(line=line, mode=mode, actor=actor, reason=reason)
        except (PermissionDenied, ValueError) as e:
            raise CommandError(str(e)) from None
        self.stdout.write(self.style.SUCCESS(f"Line {line.key} is now in {line.mode} mode ({reason})."))

    # ------------------------------------------------------------ onboard

    def _onboard(
        self,
        *,
        spec: Path,
        history: Path | None,
        reason: str,
        username: str | None,
        rejections_out: Path | None,
        **_: Any,
    ) -> None:
        actor = _actor(username)
        text = _read(spec)
        if history is not None and not history.is_file():
            raise CommandError(f"{history}: no such history file; nothing was created")
        bar = ProgressBar(self.stderr, label=history.name) if history is not None else None
        try:
            result = line_onboard(
                text=text,
                filename=str(spec),
                actor=actor,
                history_path=history,
                history_filename=history.name if history else None,
                reason=reason,
                on_progress=bar,
            )
        except SpecError as e:
            self._problems(e.problems)
            raise CommandError(f"{len(e.problems)} problem(s) in {spec}; nothing was created") from None
        except PermissionDenied as e:
            raise CommandError(f"{e}; nothing was created") from None
        except HistoryFileError as e:  # a structural problem with the history file
            if bar:
                bar.close()
            problems = getattr(e, "problems", None) or []
            for p in problems:
                self.stderr.write(_problem_text(p, history))
            raise CommandError(f"{'unusable history file' if problems else e}; nothing was created") from None
        if bar:
            bar.close()
        line, roles = result.line, result.tags_by_role
        self.stdout.write(
            self.style.SUCCESS(
                f"Onboarded line {line.key} ({line.name}), spec v{result.spec_version.version}: "
                f"{sum(roles.values())} tags ({', '.join(f'{n} {r}' for r, n in roles.items())})."
            )
        )
        if result.history is not None and history is not None:
            self._history_summary(result.history, history, rejections_out)
        self.stdout.write(f"See it with: twinops line show {line.key}")

    def _history_summary(self, h: ImportResult, history: Path, rejections_out: Path | None) -> None:
        total = max(h.rejections_total, len(h.rejections))
        not_stored = h.samples_rejected
        self.stdout.write(
            f"History {history.name}: {h.samples_received:,} samples received, {h.samples_inserted:,} imported, "
            f"{h.samples_duplicate:,} duplicate, {h.samples_bad_quality:,} bad quality, "
            f"{h.samples_out_of_range:,} out of physical range, {not_stored:,} not stored; {total:,} rejection(s) "
            "(rows are file lines, the header being line 1)."
        )
        if not h.rejections and rejections_out is None:
            return
        for r in h.rejections[:REJECTIONS_SHOWN]:
            self.stdout.write(f"  row {r.row}, column {r.column or '(row)'}: {r.reason}")
        if total > REJECTIONS_SHOWN:
            self.stdout.write(f"  … and {total - REJECTIONS_SHOWN:,} more")
        path = rejections_write_csv(
            rejections=h.rejections, path=rejections_out or history.with_name(history.name + ".rejections.csv")
        )
        kept = f" (the first {len(h.rejections):,} of {total:,})" if total > len(h.rejections) else ""
        self.stdout.write(f"Rejection report{kept}: {path}")

    # ------------------------------------------------------------ list, show

    def _list(self, **_: Any) -> None:
        lines = list(line_list())
        if not lines:
            self.stdout.write("No lines yet. Onboard one with: twinops line onboard SPEC [--history FILE]")
            return
        rows = [("KEY", "NAME", "SITE / AREA", "CV", "MV", "DV", "SPEC")]
        rows += [
            (
                ln.key,
                ln.name,
                " / ".join(x for x in (ln.site, ln.area) if x),
                str(ln.tags_cv),
                str(ln.tags_mv),
                str(ln.tags_dv),
                f"v{ln.spec_version}",
            )
            for ln in lines
        ]
        self._table(rows)

    def _show(self, *, key: str, **_: Any) -> None:
        line = _line(key)
        self.stdout.write(f"{line.key}: {line.name}")
        for label, value in (
            ("site", line.site),
            ("area", line.area),
            ("sample period", f"{line.sample_period_s:g} s"),
            ("created", f"{line.created_at:%Y-%m-%d %H:%M} UTC by {_creator(line)}"),
        ):
            if value:
                self.stdout.write(f"  {label}: {value}")
        rows = [("TAG", "ROLE", "UNIT", "PHYSICAL", "LIMITS", "SAFETY", "MOVE/STEP", "RAMP/MIN", "OPC UA", "")]
        for t in line_tags(line=line, include_inactive=True):
            rows.append(
                (
                    t.name,
                    t.role,
                    t.unit,
                    _range(t.physical_low, t.physical_high),
                    _range(t.limit_low, t.limit_high),
                    _range(t.safety_low, t.safety_high),
                    _g(t.max_move_per_step),
                    _g(t.ramp_rate_per_min),
                    t.opcua_node or "-",
                    "" if t.active else "inactive",
                )
            )
        self.stdout.write("")
        self._table(rows)
        self.stdout.write("\nSpec versions:")
        for v in spec_versions(line=line):
            self.stdout.write(
                f"  v{v.version}  {v.created_at:%Y-%m-%d %H:%M} UTC  {v.created_by_label or Actor.of(v.created_by).label}  "
                f"{v.filename or '-'}  sha256 {v.sha256[:12]}  {v.reason or '(no reason given)'}"
            )

    # ------------------------------------------------------------ update

    def _update(self, *, key: str, spec: Path, reason: str, username: str | None, **_: Any) -> None:
        actor, line = _actor(username), _line(key)
        previous = line.current_spec
        try:
            version = spec_version_create(line=line, text=_read(spec), filename=str(spec), actor=actor, reason=reason)
        except SpecError as e:
            self._problems(e.problems)
            raise CommandError(f"{len(e.problems)} problem(s) in {spec}; no new version was made") from None
        except SpecUnchangedError as e:
            self.stdout.write(str(e))
            return
        except (PermissionDenied, ValueError) as e:
            raise CommandError(str(e)) from None
        self.stdout.write(self.style.SUCCESS(f"Line {line.key}: spec v{version.version} made ({reason})."))
        for text in spec_diff(previous, version).lines() if previous else []:
            self.stdout.write(f"  {text}")

    # ------------------------------------------------------------ output

    def _problems(self, problems: list[Any]) -> None:
        for p in problems:
            self.stderr.write(str(p))

    def _table(self, rows: Sequence[Sequence[str]]) -> None:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def rejections_write_csv(*, rejections: list[Rejection], path: Path) -> Path:
    """Write a rejection report (row, column, reason) as CSV; fall back to the working directory if unwritable."""
    try:
        fh = path.open("w", newline="", encoding="utf-8")
    except OSError:
        path = Path.cwd() / path.name
        fh = path.open("w", newline="", encoding="utf-8")
    with fh:
        rejections_csv_write(rejections=rejections, out=fh)
    return path.resolve()


def _actor(username: str | None) -> Actor:
    if username is None:
        return Actor.of(f"cli:{getpass.getuser()}")
    try:
        return Actor.from_username(username)
    except LookupError as exc:
        raise CommandError(str(exc)) from None


def _line(key: str) -> Line:
    try:
        return line_get(key=key)
    except Line.DoesNotExist:
        raise CommandError(f"no line {key!r}; see `twinops line list`") from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"{path}: no such spec file; nothing was created") from None
    except UnicodeDecodeError as e:
        raise CommandError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); nothing was created") from None


def _problem_text(problem: Any, history: Path | None) -> str:
    row, column, reason = (getattr(problem, k, None) for k in ("row", "column", "reason"))
    if reason is None:
        return f"{history}: {problem}"
    where = ":".join(str(x) for x in (history, row) if x is not None)
    return f"{where}: {column or '(file)'}: {reason}"


def _creator(line: Line) -> str:
    first = spec_versions(line=line).first()
    return (first.created_by_label if first else "") or Actor.of(line.created_by).label


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _range(low: float | None, high: float | None) -> str:
    return "-" if low is None and high is None else f"[{_g(low)}, {_g(high)}]"
