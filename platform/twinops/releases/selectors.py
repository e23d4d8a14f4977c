"""Read releases: the running one of a line, its writes, the alarm a line's pages show, proposals waiting for release."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from twinops.lines.models import Line
from twinops.recommendations.models import Recommendation
from twinops.releases.models import Release, ReleaseWrite
from twinops.releases.plc import NO_PLC, plc_nodes


@dataclass(frozen=True)
class ReleaseAlarm:
    """A release that the PLC refused, changed or lost: setpoints held, shown on the line's pages."""

    release_id: int
    recommendation_id: int
    message: str
    at: datetime


def release_running(*, line: Line) -> Release | None:
    """Return the line's running release, or None."""
    return Release.objects.select_related("recommendation").filter(line=line, status=Release.Status.RUNNING).first()


def release_of(*, rec: Recommendation) -> Release | None:
    """Return the release of an approved proposal, or None if it has not started."""
    return Release.objects.filter(recommendation=rec).first()


def release_latest(*, line: Line) -> Release | None:
    """Return the line's most recently started release, or None."""
    return Release.objects.select_related("recommendation").filter(line=line).order_by("-started_at", "-id").first()


def releases_for_line(*, line: Line, limit: int = 20) -> list[Release]:
    """Return the line's most recent releases, newest first."""
    return list(Release.objects.filter(line=line).order_by("-started_at", "-id")[:limit])


def release_writes(*, release: Release) -> list[ReleaseWrite]:
    """Return a release's writes in step and tag order."""
    return list(release.writes.order_by("step", "tag"))


def release_no_plc(*, line: Line) -> str | None:
    """Return why nothing can be released to the line when its spec configures no PLC (who can act), else None."""
    spec = line.current_spec
    return NO_PLC if spec is None or plc_nodes(spec.document) is None else None


def release_alarm(*, line: Line) -> ReleaseAlarm | None:
    """Return the alarm of the line's latest release (None when it ended without one, or none was made)."""
    latest = release_latest(line=line)
    if latest is None or not latest.alarm:
        return None
    return ReleaseAlarm(
        release_id=latest.pk,
        recommendation_id=latest.recommendation_id,
        message=latest.alarm,
        at=latest.ended_at or latest.started_at,
    )


def writes_unconfirmed(*, line: Line) -> list[ReleaseWrite]:
    """Return the line's writes claimed but never confirmed (an agent stopped between claim and read-back)."""
    return list(
        ReleaseWrite.objects.select_related("release")
        .filter(release__line=line, status=ReleaseWrite.Status.CLAIMED)
        .order_by("release_id", "step", "tag")
    )


def approved_unreleased(*, line: Line) -> list[Recommendation]:
    """Return the line's approved proposals that have no release yet, newest decision first."""
    # Read here, not in recommendations.selectors: "unreleased" is a notion of this app (a join on its table).
    return list(
        Recommendation.objects.select_related("line", "twin_version", "spec_version")
        .defer("twin_version__checkpoint", "twin_version__preview")
        .filter(line=line, status=Recommendation.Status.APPROVED, release__isnull=True)
        .order_by("-decided_at", "-id")
    )


def approved_newer_than(*, rec: Recommendation) -> Recommendation | None:
    """Return the newest approved proposal of the line decided after `rec`, or None."""
    return (
        Recommendation.objects.filter(
            line_id=rec.line_id, status=Recommendation.Status.APPROVED, decided_at__gt=rec.decided_at
        )
        .order_by("-decided_at", "-id")
        .first()
    )


def releases_between(
    *, start: datetime | None, end: datetime | None, line_key: str | None = None
) -> dict[int, Release]:
    """Return the releases of the recommendations made in [start, end) by recommendation id, writes prefetched."""
    rows = Release.objects.all()
    if start is not None:
        rows = rows.filter(recommendation__created_at__gte=start)
    if end is not None:
        rows = rows.filter(recommendation__created_at__lt=end)
    if line_key:
        rows = rows.filter(line__key=line_key)
    return {r.recommendation_id: r for r in rows.prefetch_related("writes")}
