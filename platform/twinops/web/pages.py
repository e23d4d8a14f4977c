"""Context for the dashboard pages, composed from the lines and telemetry selectors (reads only)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.http import Http404

from twinops.lines.models import Line, SpecVersion, Tag
from twinops.lines.selectors import line_tags, spec_diff
from twinops.lines.spec import ParsedSpec
from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.selectors import (
    ChartSeries,
    TagFreshness,
    TagQuality,
    chart_series,
    freshness_limit_s,
    import_job_get,
    quality_summary,
    tag_freshness,
)
from twinops.web.forms import ChartForm
from twinops.web.plots import Panel, figure_for

CHART_MAX_POINTS = 2000  # per tag: about one point per screen pixel column on a wide display
DEFAULT_CHART_TAGS = 3
ROLE_ORDER = {"CV": 0, "MV": 1, "DV": 2}
ROLE_HEADINGS = {"CV": "Controlled variables", "MV": "Manipulated variables (setpoints)", "DV": "Measured disturbances"}


# --- line list ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineRow:
    """One line in the line list."""

    line: Line
    tags_by_role: dict[str, int]
    latest: datetime | None  # time of the newest sample of any tag, None without data


def line_rows(*, lines: Iterable[Line]) -> list[LineRow]:
    """Return the line list's rows: tag counts by role and data freshness."""
    rows = []
    for line in lines:
        counts = {
            "CV": getattr(line, "tags_cv", 0),
            "MV": getattr(line, "tags_mv", 0),
            "DV": getattr(line, "tags_dv", 0),
        }
        rows.append(LineRow(line=line, tags_by_role=counts, latest=_latest(quality_summary(line=line))))
    return rows


# --- data quality -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QualityRow:
    """One tag's data quality, with the flags the table highlights."""

    tag: Tag
    quality: TagQuality
    problem: bool  # some samples are bad or out of range
    no_data: bool
    bad_count: int  # bad + out of range
    total: int
    freshness: TagFreshness | None  # now: the recommender withholds while a tag it uses is not fresh


def quality_context(*, line: Line, now: datetime, summary: Sequence[TagQuality] | None = None) -> dict[str, Any]:
    """Return the quality table's rows for a line (problems first), its newest sample time and its stale tags."""
    summary = quality_summary(line=line) if summary is None else summary
    tags = {t.name: t for t in line_tags(line=line)}
    freshness = tag_freshness(line=line, now=now)
    rows = []
    for q in summary:
        tag = tags.get(q.tag)
        if tag is None:
            continue
        bad = (q.bad or 0) + (q.out_of_range or 0)
        rows.append(
            QualityRow(
                tag=tag,
                quality=q,
                problem=bad > 0,
                no_data=q.last_time is None,
                bad_count=bad,
                total=bad + (q.good or 0),
                freshness=freshness.get(q.tag),
            )
        )
    not_fresh = [r for r in rows if r.freshness is not None and not r.freshness.fresh]
    rows.sort(key=lambda r: (not r.problem, r.no_data, r.tag.role, r.tag.name))
    return {
        "quality_rows": rows,
        "latest": _latest(summary),
        "problem_count": sum(r.problem for r in rows),
        "not_fresh": not_fresh,
        "fresh_limit_s": freshness_limit_s(line=line),
    }


def _latest(summary: Iterable[TagQuality]) -> datetime | None:
    times = [q.last_time for q in summary if q.last_time is not None]
    return max(times) if times else None


# --- chart --------------------------------------------------------------------------------------------------------
def chart_context(*, line: Line, form: ChartForm, now: datetime, latest: datetime | None = None) -> dict[str, Any]:
    """Return the chart partial's context: the form, the chosen window, and the figure (None without tags)."""
    tags = sorted(line_tags(line=line), key=lambda t: (ROLE_ORDER.get(t.role, 3), t.name))
    if not form.is_bound:
        chosen = [t.name for t in _default_tags(tags)]
        form = ChartForm({"tags": chosen, "range": "24h"}, tag_names=[t.name for t in tags])
    context: dict[str, Any] = {"chart_form": form, "all_tags": tags, "figure": None, "window": None}
    if not form.is_valid():
        return context
    anchor = form.cleaned_data.get("anchor") or latest
    if anchor is None and form.cleaned_data["range"] != "custom":
        anchor = _latest(quality_summary(line=line))
    start, end = form.window(now=now, latest=anchor)
    by_name = {t.name: t for t in tags}
    panels = []
    for name in form.cleaned_data["tags"]:
        series = chart_series(tag=by_name[name], start=start, end=end, max_points=CHART_MAX_POINTS)
        panels.append(Panel(tag=by_name[name], series=series))
    context.update(
        window=(start, end),
        anchor=anchor,
        figure=figure_for(panels=panels, start=start, end=end) if panels else None,
        rollup=any(_is_rollup(p.series) for p in panels),
        point_count=sum(len(p.series.times) for p in panels),
    )
    return context


def _default_tags(tags: Sequence[Tag]) -> list[Tag]:
    """Pick what to show first from tags in role order: the CVs (what the line is run for), then MVs."""
    return list(tags[:DEFAULT_CHART_TAGS])


def _is_rollup(series: ChartSeries) -> bool:
    return series.mins is not None


# --- spec preview -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpecPreview:
    """A parsed spec laid out for the preview page."""

    line: dict[str, Any]
    tags_by_role: list[tuple[str, str, list[Any]]]  # (role, role description, tags)
    tag_count: int
    objective: dict[str, Any] | None = field(default=None)


def spec_preview(parsed: ParsedSpec) -> SpecPreview:
    """Lay out a `ParsedSpec` for the preview: line fields, tags grouped by role, the objective."""
    groups = [(role, label, [t for t in parsed.tags if t.role == role]) for role, label in ROLE_HEADINGS.items()]
    doc = parsed.document
    return SpecPreview(
        line=doc["line"], tags_by_role=groups, tag_count=len(parsed.tags), objective=doc.get("objective")
    )


# --- spec versions ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionRow:
    """A spec version and what it changed from the one before."""

    version: SpecVersion
    changes: list[str]


def version_rows(versions: Sequence[SpecVersion]) -> list[VersionRow]:
    """Return spec versions newest first, each with its changes from the previous version."""
    rows = []
    for before, after in zip([None, *versions[:-1]], versions, strict=True):
        changes = spec_diff(before, after).lines() if before is not None else []
        rows.append(VersionRow(version=after, changes=changes))
    return rows[::-1]


# --- history imports ----------------------------------------------------------------------------------------------
def import_context(*, job_id: int) -> dict[str, Any]:
    """Return an import job with its progress and result, for the progress page and partial; 404 if there is none."""
    try:
        job = import_job_get(job_id=job_id)
    except HistoryImportJob.DoesNotExist:
        raise Http404(f"No import job {job_id}.") from None
    finished = job.status in (HistoryImportJob.Status.DONE, HistoryImportJob.Status.FAILED)
    percent = 100 if job.status == HistoryImportJob.Status.DONE else int(min(99.0, max(0.0, job.progress)))
    return {"job": job, "percent": percent, "finished": finished, "result": job.result or {}}
