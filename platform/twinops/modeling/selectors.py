"""Read the twin registry: versions, the promoted twin, loaded twins and exports, training jobs."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from django.db.models import Q, QuerySet

from twinops.lines.models import Line
from twinops.modeling.models import TrainingJob, TwinVersion
from twins import CheckpointError, CorruptCheckpointError, Twin, load_checkpoint, save_checkpoint

HEAVY_FIELDS = ("checkpoint", "preview")  # megabytes per row: left out of listings


def twin_versions(*, line: Line) -> QuerySet[TwinVersion]:
    """Return a line's twin versions, newest first, without their checkpoint bytes."""
    return TwinVersion.objects.filter(line=line).defer(*HEAVY_FIELDS).select_related("created_by").order_by("-version")


def twin_version_get(*, line: Line, version: int) -> TwinVersion:
    """Return one version of a line's twin; raise TwinVersion.DoesNotExist if there is none."""
    return TwinVersion.objects.get(line=line, version=version)


def twin_promoted(*, line: Line) -> TwinVersion | None:
    """Return the promoted twin version of a line — the only one that feeds the optimizer — or None."""
    return TwinVersion.objects.filter(line=line, status=TwinVersion.Status.PROMOTED).first()


def twins_promoted() -> QuerySet[TwinVersion]:
    """Return every line's promoted twin version with its line and job, checkpoints left out."""
    promoted = TwinVersion.objects.filter(status=TwinVersion.Status.PROMOTED)
    return promoted.defer(*HEAVY_FIELDS).select_related("line", "job").order_by("line_id")


def twin_latest(*, line: Line) -> TwinVersion | None:
    """Return the newest twin version of a line, promoted or not, or None."""
    return TwinVersion.objects.filter(line=line).order_by("-version").first()


def twin_first_promotable(*, line: Line) -> TwinVersion | None:
    """Return the line's oldest promotable candidate if no twin of the line was ever promoted, else None."""
    if TwinVersion.objects.filter(line=line, promoted_at__isnull=False).exists():
        return None
    candidates = TwinVersion.objects.filter(line=line, status=TwinVersion.Status.CANDIDATE, promotable=True)
    return candidates.defer(*HEAVY_FIELDS).order_by("version").first()


def twin_line_ids() -> list[int]:
    """Return the ids of the lines that have ever had a twin version, ascending."""
    return sorted(set(TwinVersion.objects.values_list("line_id", flat=True)))


def twin_shown(*, line: Line) -> TwinVersion | None:
    """Return the version a report is about by default: the promoted one, else the newest."""
    return twin_promoted(line=line) or twin_latest(line=line)


def checkpoint_bytes(twin: Twin) -> bytes:
    """Serialise a twin with twins.save_checkpoint (versioned, hashed header) into bytes for the registry."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "twin.ckpt"
        save_checkpoint(twin, path)
        return path.read_bytes()


def checkpoint_twin(data: bytes, *, label: str) -> Twin:
    """Load a twin from checkpoint bytes; raise CheckpointError (corrupt or incompatible) naming `label`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "twin.ckpt"
        path.write_bytes(bytes(data))
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            # twins names the file it read; here that is a temporary copy, so name the registry entry instead.
            raise type(exc)(str(exc).replace(str(path), label)) from exc


def twin_load(*, version: TwinVersion) -> Twin:
    """Load a version's twin from its checkpoint if its SHA-256 is the registered one; else raise CheckpointError."""
    data = version.checkpoint
    if data is None or len(data) == 0:
        raise CheckpointError(f"{version} has no checkpoint stored")
    data = bytes(data)
    actual = hashlib.sha256(data).hexdigest()
    if actual == version.checkpoint_sha256:
        return checkpoint_twin(data, label=str(version))
    # Not the bytes that were trained and audited: never used. Reading them (torch's weights-only loader, result
    # discarded) only tells damage or an unknown schema apart from a well-formed checkpoint put in its place.
    checkpoint_twin(data, label=str(version))
    raise CorruptCheckpointError(
        f"the stored checkpoint of {version} does not match the SHA-256 recorded when it was registered "
        f"(recorded {version.checkpoint_sha256[:16] or 'none'}…, stored {actual[:16]}…): it was replaced, so it is "
        "not loaded"
    )


def training_jobs(*, line: Line, limit: int = 10) -> list[TrainingJob]:
    """Return a line's most recent training jobs, newest first."""
    return list(
        TrainingJob.objects.filter(line=line).select_related("version").order_by("-requested_at", "-id")[:limit]
    )


def training_jobs_ahead(*, job: TrainingJob) -> list[TrainingJob]:
    """Return the unfinished training jobs of every line requested before `job`, oldest first.

    The train queue serves them first (its workers take one job at a time, in the order they were sent).
    """
    earlier = Q(requested_at__lt=job.requested_at) | Q(requested_at=job.requested_at, id__lt=job.id)
    return list(
        TrainingJob.objects.filter(earlier, status__in=TrainingJob.UNFINISHED)
        .select_related("line")
        .order_by("requested_at", "id")
    )


def training_jobs_active(*, line: Line) -> list[TrainingJob]:
    """Return a line's queued and running training jobs, oldest first."""
    return list(TrainingJob.objects.filter(line=line, status__in=TrainingJob.UNFINISHED).order_by("requested_at", "id"))
