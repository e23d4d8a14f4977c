"""`twinops twin train|report|promote|rollback LINE …`: the twin registry from the command line."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from twinops.core.actors import Actor
from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.modeling import selectors, services
from twinops.modeling.models import TrainingJob, TwinVersion

BAR_WIDTH = 30
PROGRESS_WIDTH = 120  # characters of the progress line (the longest: losses and the step after training)


def _when(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise CommandError(f"{raw!r} is not an ISO date-time (e.g. 2026-03-01T00:00:00Z)")
    return make_aware(value) if is_naive(value) else value


def progress_line(job: TrainingJob) -> str:
    """Render a one-line progress bar for a job: epoch, bar, latest losses."""
    done = int(BAR_WIDTH * job.epoch / job.total_epochs) if job.total_epochs else 0
    losses = " ".join(f"{k} {v:.4f}" for k, v in job.last_losses.items() if k in {"loss", "cv", "val_cv"})
    step = f" · {job.phase}…" if job.phase and job.phase != "training" else ""
    line = f"[{'#' * done}{'.' * (BAR_WIDTH - done)}] epoch {job.epoch}/{job.total_epochs or '?'} {losses}{step}"
    return f"\r{line:<{PROGRESS_WIDTH}}"  # padded: a shorter line overwrites all of the longer one before it


class Command(BaseCommand):
    help = "Train, report on, promote and roll back a line's twin."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        train = sub.add_parser("train", help="queue a training job (with --wait: run it here and show progress)")
        train.add_argument("line")
        train.add_argument("--wait", action="store_true", help="train in this process with a progress bar on stderr")
        train.add_argument(
            "--on-worker",
            action="store_true",
            help="with --wait: let a train-queue worker run it and follow its progress",
        )
        train.add_argument("--start", help="ISO date-time of the window start (default: first sample)")
        train.add_argument("--end", help="ISO date-time of the window end, exclusive (default: after the last sample)")
        train.add_argument("--config", default="{}", help="TwinConfig overrides as JSON, e.g. '{\"epochs\": 5}'")
        train.add_argument("--device", default=None, help="with --wait: cpu or cuda (default: cuda when available)")
        report = sub.add_parser("report", help="print the promoted (else latest) version's evaluation report")
        report.add_argument("line")
        report.add_argument("--json", action="store_true", help="print the report as JSON")
        report.add_argument("--version", type=int, help="report on this version instead")
        promote = sub.add_parser("promote", help="promote a version so the optimizer uses it")
        promote.add_argument("line")
        promote.add_argument("version", type=int)
        promote.add_argument("--reason", required=True)
        rollback = sub.add_parser("rollback", help="return to the previously promoted version")
        rollback.add_argument("line")
        rollback.add_argument("--reason", required=True)
        for p in (train, promote, rollback):
            p.add_argument("--user", help="act as this user (default: system:cli)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            line = line_get(key=opts["line"])
        except Line.DoesNotExist:
            raise CommandError(f"no line {opts['line']!r}") from None
        getattr(self, f"_{opts['action']}")(line, opts)

    def _actor(self, opts: dict[str, Any]) -> Actor:
        if not opts.get("user"):
            return Actor.of("system:cli")
        try:
            return Actor.from_username(opts["user"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None

    def _train(self, line: Line, opts: dict[str, Any]) -> None:
        try:
            overrides = json.loads(opts["config"])
            job = services.training_job_create(
                line=line,
                actor=self._actor(opts),
                start=_when(opts["start"]),
                end=_when(opts["end"]),
                config_overrides=overrides,
                enqueue=not opts["wait"] or opts["on_worker"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"training job {job.pk} for {line.key} queued")
        if not opts["wait"]:
            return
        if opts["on_worker"]:
            job = self._follow(job)
        else:
            job = services.training_job_run(job_id=job.pk, device=opts["device"], on_progress=self._bar) or job
            job.refresh_from_db()
        self.stderr.write("", style_func=lambda text: text)
        if job.status == TrainingJob.Status.DONE:
            v = job.version
            self.stdout.write(f"registered {line.key} twin v{v.version}: {v.report['reason']}")
        else:
            raise CommandError(f"training job {job.pk} {job.status}: {job.message}")

    def _bar(self, job: TrainingJob) -> None:
        self.stderr.write(progress_line(job), style_func=lambda text: text, ending="")
        self.stderr.flush()

    def _follow(self, job: TrainingJob) -> TrainingJob:
        while job.active:
            time.sleep(1.0)
            job.refresh_from_db()
            self._bar(job)
        return job

    def _report(self, line: Line, opts: dict[str, Any]) -> None:
        try:
            version = (
                selectors.twin_version_get(line=line, version=opts["version"])
                if opts["version"]
                else selectors.twin_shown(line=line)
            )
        except TwinVersion.DoesNotExist:
            raise CommandError(f"{line.key} has no twin version {opts['version']}") from None
        if version is None:
            raise CommandError(f"{line.key} has no trained twin")
        if opts["json"]:
            self.stdout.write(
                json.dumps(
                    {"line": line.key, "version": version.version, "status": version.status, "report": version.report},
                    indent=2,
                )
            )
            return
        r = version.report
        self.stdout.write(
            f"{line.key} twin v{version.version} ({version.status}), trained on {r['device']} "
            f"in {r['train_seconds']:.1f} s; {r['reason']}"
        )
        models = {"twin": r["twin"], **r["baselines"]}
        self.stdout.write(f"{'CV':<24}{'model':<14}" + "".join(f"{k:>10}" for k in ("h1", "h5", "h20", "free_run")))
        for cv in r["cv_names"]:
            for name, scores in models.items():
                cells = "".join(f"{scores['nrmse'][k][cv]:>10.4f}" for k in ("h1", "h5", "h20", "free_run"))
                self.stdout.write(f"{cv:<24}{name:<14}{cells}")

    def _promote(self, line: Line, opts: dict[str, Any]) -> None:
        try:
            version = selectors.twin_version_get(line=line, version=opts["version"])
            services.twin_promote(version=version, actor=self._actor(opts), reason=opts["reason"])
        except TwinVersion.DoesNotExist:
            raise CommandError(f"{line.key} has no twin version {opts['version']}") from None
        except services.PromotionError as exc:
            raise CommandError(f"promotion refused: {exc}") from exc
        self.stdout.write(f"{line.key} twin v{version.version} promoted")

    def _rollback(self, line: Line, opts: dict[str, Any]) -> None:
        try:
            back = services.twin_rollback(line=line, actor=self._actor(opts), reason=opts["reason"])
        except services.PromotionError as exc:
            raise CommandError(f"rollback refused: {exc}") from exc
        self.stdout.write(f"{line.key} rolled back: twin v{back.version} is promoted again")
