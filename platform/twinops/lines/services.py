"""Create lines from spec files and version their specs; each write commits together with its audit events.

Onboarding a line together with its history is `twinops.onboarding`'s: telemetry sits above lines.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from twinops.audit.services import audit_record
from twinops.core.actors import Actor, ActorLike
from twinops.core.roles import capability_require
from twinops.lines.models import Line, SpecVersion, Tag
from twinops.lines.selectors import spec_diff, tag_flatten
from twinops.lines.spec import ParsedSpec, SpecError, SpecProblem, TagSpec, spec_parse

__all__ = [
    "LineCreated",
    "LineExistsError",
    "SpecError",
    "SpecProblem",
    "SpecUnchangedError",
    "line_create",
    "spec_parse",
    "line_lock",
    "line_mode_set",
    "spec_version_create",
]


class LineExistsError(SpecError):
    """The spec's line id is already onboarded; its one problem points at `line.id`."""


class SpecUnchangedError(ValueError):
    """The new spec says the same as the line's current version, so no version was made."""


@dataclass(frozen=True)
class LineCreated:
    """What creating a line made: the line, spec version 1 and tag counts by role."""

    line: Line
    spec_version: SpecVersion
    tags_by_role: dict[str, int]  # {"CV": 2, "MV": 1, "DV": 0}


def line_create(*, text: str, filename: str, actor: ActorLike, reason: str = "") -> LineCreated:
    """Validate a spec and create its line, spec v1 and tags with their audit events, in one transaction.

    `text`/`filename`: the spec file's content and the name to report problems against. `actor`: a person with the
    `onboard_line` capability, or a system component such as "cli:root". Runs inside the caller's transaction when
    there is one (onboarding imports the line's history in the same one). Raises `SpecError` (invalid spec;
    `LineExistsError` when the id is taken) or `PermissionDenied`; then nothing is created.
    """
    parsed = spec_parse(text=text, filename=filename)
    who = Actor.of(actor)
    capability_require(actor=who, capability="onboard_line")
    try:
        with transaction.atomic():
            if Line.objects.filter(key=parsed.key).exists():
                raise _line_exists(parsed)
            line, version = _line_insert(parsed, actor=who, reason=reason)
    except IntegrityError:
        if Line.objects.filter(key=parsed.key).exists():  # onboarded concurrently between our check and insert
            raise _line_exists(parsed) from None
        raise
    roles = Counter(t.role for t in parsed.tags)
    return LineCreated(line=line, spec_version=version, tags_by_role={r: roles.get(r, 0) for r in Tag.Role.values})


def spec_version_create(*, line: Line, text: str, filename: str, actor: ActorLike, reason: str) -> SpecVersion:
    """Make the next spec version of a line from a changed spec; tags are updated in place, dropped ones deactivated.

    `reason` is required (why the spec changed). Raises `SpecError` when the spec is invalid or names another line,
    `SpecUnchangedError` when it says the same as the current version, `ValueError` without a reason,
    `PermissionDenied` when the actor may not change specs. The audit event holds before -> after of what changed.
    """
    if not reason.strip():
        raise ValueError("a reason is required: say why the spec changes (it is kept with the version and audited)")
    parsed = spec_parse(text=text, filename=filename)
    who = Actor.of(actor)
    capability_require(actor=who, capability="onboard_line")
    if parsed.key != line.key:
        raise SpecError(
            [
                SpecProblem(
                    filename,
                    parsed.line_of("line", "id"),
                    "line.id",
                    f"this spec is for line {parsed.key!r}, not {line.key!r}; a line's id never changes",
                )
            ]
        )
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line.pk)  # one new version at a time per line
        current = line.spec_versions.order_by("-version").first()
        diff = spec_diff(current.document if current else {}, parsed.document)
        if current is not None and diff.empty:
            raise SpecUnchangedError(
                f"{filename} says the same as version {current.version} of line {line.key!r}: no new version made"
            )
        number = (current.version if current else 0) + 1
        version = _version_create(line, parsed, number=number, actor=who, reason=reason)
        _line_fields_set(line, parsed)
        line.save(update_fields=["name", "site", "area", "sample_period_s"])
        _tags_sync(line, parsed.tags)
        audit_record(
            actor=who,
            action="spec.version_created",
            obj=version,
            reason=reason,
            before={"version": number - 1, **diff.before()},
            after={"line": line.key, "version": number, "sha256": parsed.sha256, "filename": filename, **diff.after()},
        )
    return version


def line_mode_set(*, line: Line, mode: str, actor: ActorLike, reason: str) -> Line:
    """Switch a line off, to shadow or to advisory (engineer or admin, with a reason); audited with the change."""
    actor = Actor.of(actor)
    capability_require(actor=actor, capability="approve_proposal")
    if mode not in Line.Mode.values:
        raise ValueError(f"mode must be one of {', '.join(Line.Mode.values)}, not {mode!r}")
    reason = reason.strip()
    if not reason:
        raise ValueError("give a reason for changing the line's mode")
    with transaction.atomic():
        locked = Line.objects.select_for_update().get(pk=line.pk)
        before = locked.mode
        if before == mode:
            raise ValueError(f"line {locked.key} is already in {mode} mode")
        now = timezone.now()
        Line.objects.filter(pk=locked.pk).update(
            mode=mode, mode_changed_at=now, mode_changed_by_label=actor.label, mode_reason=reason
        )
        audit_record(
            actor=actor,
            action="line.mode_changed",
            obj=locked,
            reason=reason,
            at=now,
            before={"mode": before},
            after={"mode": mode},
        )
    line.refresh_from_db()
    return line


def line_lock(*, line_id: int) -> None:
    """Lock a line's row until the caller's transaction ends: other apps serialise their writes about one line."""
    Line.objects.select_for_update().filter(pk=line_id).first()


# ---------------------------------------------------------------- helpers


def _line_exists(parsed: ParsedSpec) -> LineExistsError:
    return LineExistsError(
        [
            SpecProblem(
                parsed.filename,
                parsed.line_of("line", "id"),
                "line.id",
                f"line {parsed.key!r} already exists; change its spec with `twinops line update {parsed.key} SPEC --reason ...`",
            )
        ]
    )


def _line_fields_set(line: Line, parsed: ParsedSpec) -> None:
    doc = parsed.document["line"]
    line.name, line.site, line.area = doc["name"], doc.get("site", ""), doc.get("area", "")
    line.sample_period_s = float(doc["sample_period_s"])


def _line_insert(parsed: ParsedSpec, *, actor: Actor, reason: str) -> tuple[Line, SpecVersion]:
    line = Line(key=parsed.key, created_at=timezone.now(), created_by=actor.user)
    _line_fields_set(line, parsed)
    line.save(force_insert=True)
    version = _version_create(line, parsed, number=1, actor=actor, reason=reason)
    Tag.objects.bulk_create([Tag(line=line, **asdict(t)) for t in parsed.tags])
    audit_record(
        actor=actor,
        action="line.created",
        obj=line,
        reason=reason,
        after={
            "key": line.key,
            "name": line.name,
            "site": line.site,
            "area": line.area,
            "sample_period_s": line.sample_period_s,
        },
    )
    audit_record(
        actor=actor,
        action="spec.version_created",
        obj=version,
        reason=reason,
        after={
            "line": line.key,
            "version": 1,
            "sha256": parsed.sha256,
            "filename": parsed.filename,
            "tags": {t["name"]: tag_flatten(t) for t in parsed.document["tags"]},
            "objective": parsed.document.get("objective"),
        },
    )
    return line, version


def _version_create(line: Line, parsed: ParsedSpec, *, number: int, actor: Actor, reason: str) -> SpecVersion:
    return SpecVersion.objects.create(
        line=line,
        version=number,
        document=parsed.document,
        source_text=parsed.source_text,
        sha256=parsed.sha256,
        filename=parsed.filename,
        created_at=timezone.now(),
        created_by=actor.user,
        created_by_label=actor.label,
        reason=reason,
    )


def _tags_sync(line: Line, specs: tuple[TagSpec, ...]) -> None:
    """Update tags in place by name (ids stay stable for telemetry), add new ones, deactivate dropped ones."""
    existing = {t.name: t for t in Tag.objects.filter(line=line)}
    for spec in specs:
        fields = asdict(spec)
        tag = existing.pop(spec.name, None)
        if tag is None:
            Tag.objects.create(line=line, **fields)
            continue
        for name, value in fields.items():
            setattr(tag, name, value)
        tag.active = True
        tag.save()
    for tag in existing.values():
        if tag.active:
            tag.active = False
            tag.save(update_fields=["active"])
