"""Carry a previewed spec from the preview page to the confirm step, and keep uploaded history files for the worker."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from twinops.core.actors import ActorLike
from twinops.onboarding.services import OnboardResult, line_onboard_queued
from twinops.telemetry.selectors import import_job_paths_unfinished
from twinops.web import conf

SESSION_KEY = "onboard_drafts"
MAX_DRAFTS = 5  # per session: a few open previews in different tabs, never an unbounded pile


@dataclass(frozen=True)
class Draft:
    """A spec that passed validation and waits for the user's confirmation."""

    text: str
    filename: str


def draft_save(*, session: Any, text: str, filename: str) -> str:
    """Keep a previewed spec in the user's session; return its id for the confirm form."""
    drafts: dict[str, dict[str, str]] = session.get(SESSION_KEY, {})
    while len(drafts) >= MAX_DRAFTS:
        drafts.pop(next(iter(drafts)))
    draft_id = secrets.token_urlsafe(16)
    drafts[draft_id] = {"text": text, "filename": filename}
    session[SESSION_KEY] = drafts
    return draft_id


def draft_get(*, session: Any, draft_id: str) -> Draft | None:
    """Return a previewed spec by id, or None when it is unknown or expired."""
    found = session.get(SESSION_KEY, {}).get(draft_id)
    return Draft(text=found["text"], filename=found["filename"]) if found else None


def draft_drop(*, session: Any, draft_id: str) -> None:
    """Forget a previewed spec once it has been used."""
    drafts = session.get(SESSION_KEY, {})
    if drafts.pop(draft_id, None) is not None:
        session[SESSION_KEY] = drafts


def uploads_folder() -> Path:
    """Return the shared media directory where uploaded history files wait for the import worker."""
    return Path(settings.MEDIA_ROOT) / "history-uploads"


def uploads_sweep(*, now: float | None = None) -> list[Path]:
    """Delete uploaded files older than TWINOPS_UPLOAD_MAX_AGE_H that no unfinished import needs; return them.

    A finished import deletes its own file; these are the ones left by a web process that died between storing
    the upload and committing its job, or by a job that never finished.
    """
    cutoff = (time.time() if now is None else now) - conf.upload_max_age_h() * 3600
    needed = import_job_paths_unfinished()
    swept = []
    for path in uploads_folder().glob("*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff and str(path) not in needed:
                path.unlink()
                swept.append(path)
        except FileNotFoundError:  # another web process swept it first
            continue
    return swept


def upload_store(*, upload: UploadedFile) -> Path:
    """Copy an uploaded history file to the shared media directory, where the import worker can read it.

    Each upload first sweeps the folder of files nobody will read any more, so abandoned uploads never pile up.
    """
    folder = uploads_folder()
    folder.mkdir(parents=True, exist_ok=True)
    uploads_sweep()
    path = folder / f"{uuid.uuid4().hex}{PurePath(upload.name or '').suffix.lower()}"
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


def draft_onboard(*, draft: Draft, actor: ActorLike, history: UploadedFile | None, reason: str) -> OnboardResult:
    """Onboard a line from a previewed spec and queue its uploaded history file; keep no file if onboarding fails."""
    if history is None:
        return line_onboard_queued(
            text=draft.text, filename=draft.filename, actor=actor, history_path=None, history_filename="", reason=reason
        )
    path = upload_store(upload=history)
    try:
        return line_onboard_queued(
            text=draft.text,
            filename=draft.filename,
            actor=actor,
            history_path=path,
            history_filename=history.name or path.name,
            reason=reason,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
