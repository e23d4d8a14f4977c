"""Onboard a line with its history: the spec's line and the history file's samples commit together or not at all.

Lines know nothing of telemetry (it sits above them), so the composition lives here, above both. The command line
and the demo import the history in the onboarding transaction; the web form queues it for the ingest worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from twinops.audit.services import audit_deferred
from twinops.core.actors import Actor, ActorLike
from twinops.core.roles import capability_require
from twinops.lines.models import Line, SpecVersion
from twinops.lines.services import line_create
from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.services import ImportResult, history_import, history_import_enqueue


@dataclass(frozen=True)
class OnboardResult:
    """What onboarding made: the line, spec version 1, tag counts by role, and what became of the history file."""

    line: Line
    spec_version: SpecVersion
    tags_by_role: dict[str, int]  # {"CV": 2, "MV": 1, "DV": 0}
    history: ImportResult | None = None  # the import's result when the file was imported at once
    history_job: HistoryImportJob | None = None  # the queued import job when the file went to the ingest worker


def line_onboard(
    *,
    text: str,
    filename: str,
    actor: ActorLike,
    history_path: Path | None = None,
    history_filename: str | None = None,
    reason: str = "",
    on_progress: Callable[[int, int], None] | None = None,
) -> OnboardResult:
    """Validate a spec and create its line, spec v1 and tags, importing its history file in the same transaction.

    `text`/`filename`: the spec file's content and the name to report problems against. `actor`: a person (needs
    `onboard_line`, and `import_telemetry` with history) or a system component such as "cli:root". `history_path`:
    a wide or long CSV/Parquet file for `telemetry.services.history_import` (`history_filename` is its name for
    reports, default the path's name); `on_progress` is passed on to it. Raises `SpecError` (invalid spec;
    `LineExistsError` when the id is taken), `HistoryFileError` (structurally bad history file) or
    `PermissionDenied`; in every such case nothing at all is created.
    """
    who = Actor.of(actor)
    # The audit events are appended when the import is done, so other audited actions never wait for the import.
    with transaction.atomic(), audit_deferred():
        created = line_create(text=text, filename=filename, actor=who, reason=reason)
        history = None
        if history_path is not None:
            capability_require(actor=who, capability="import_telemetry")  # after the spec's checks, as they report
            path = Path(history_path)
            history = history_import(
                line=created.line, path=path, filename=history_filename or path.name, actor=who, on_progress=on_progress
            )
    return OnboardResult(
        line=created.line, spec_version=created.spec_version, tags_by_role=created.tags_by_role, history=history
    )


def line_onboard_queued(
    *, text: str, filename: str, actor: ActorLike, history_path: Path | None, history_filename: str, reason: str = ""
) -> OnboardResult:
    """Create a line from a spec and queue its history file (if any) for the ingest worker, in one transaction.

    The job is sent once the transaction commits, so a line never exists without the job for its file, nor a job
    without its line. Raises as `line_onboard` does, except for the history file, which the worker reads.
    """
    who = Actor.of(actor)
    with transaction.atomic():
        created = line_create(text=text, filename=filename, actor=who, reason=reason)
        job = None
        if history_path is not None:
            capability_require(actor=who, capability="import_telemetry")
            job = history_import_enqueue(line=created.line, path=history_path, filename=history_filename, actor=who)
    return OnboardResult(
        line=created.line, spec_version=created.spec_version, tags_by_role=created.tags_by_role, history_job=job
    )
