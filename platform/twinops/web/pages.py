"""Context for the dashboard pages, composed from the lines and telemetry selectors (reads only)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.http import Http404
from django.utils import timezone

from twinops.core.roles import user_can
from twinops.lines.models import Line, SpecVersion, Tag
from twinops.lines.selectors import line_tags, spec_diff, tag_units
from twinops.lines.spec import ParsedSpec
from twinops.recommendations.models import Recommendation
from twinops.recommendations.pages import charts as rec_charts
from twinops.recommendations.pages import outcome_context
from twinops.recommendations.selectors import (
    dual_approval_moves,
    recommendation_get,
    recommendation_last_approved,
    signatures_needed,
)
from twinops.releases.selectors import release_no_plc, release_of, release_writes
from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.selectors import (
    ChartSeries,
    TagFreshness,
    TagQuality,
    chart_series_many,
    freshness_limit_s,
    import_job_get,
    import_jobs_ahead,
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
    tags = sorted(line_tags(line=line).select_related("line"), key=lambda t: (ROLE_ORDER.get(t.role, 3), t.name))
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
    chosen = [by_name[name] for name in form.cleaned_data["tags"]]
    series = chart_series_many(tags=chosen, start=start, end=end, max_points=CHART_MAX_POINTS)
    panels = [Panel(tag=tag, series=s) for tag, s in zip(chosen, series, strict=True)]
    context.update(
        window=(start, end),
        anchor=anchor,
        figure=figure_for(panels=panels, start=start, end=end) if panels else None,
        rollup=any(_is_rollup(p.series) for p in panels),
        point_count=sum(len(p.series.times_us) for p in panels),
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
    waiting_for = import_waiting_for(job=job) if job.status == HistoryImportJob.Status.QUEUED else ""
    return {
        "job": job,
        "percent": percent,
        "finished": finished,
        "result": job.result or {},
        "waiting_for": waiting_for,
    }


IMPORT_UNCLAIMED_WARN_S = 60  # a queued import nobody took for this long: say that no ingest worker may be running


def import_waiting_for(*, job: HistoryImportJob, now: datetime | None = None) -> str:
    """Say what a queued import waits for: imports ahead of it, or an ingest worker to take it."""
    ahead = import_jobs_ahead(job=job)
    if ahead:
        return (
            f"Waiting for the ingest worker: {ahead} import{'s' if ahead != 1 else ''} ahead of this one "
            "(imports have a worker of their own; twin training never holds them up)."
        )
    waited_s = ((now or timezone.now()) - job.created_at).total_seconds()
    if waited_s >= IMPORT_UNCLAIMED_WARN_S:
        return (
            f"No ingest worker has taken this import in {waited_s:.0f} s: is a worker for the ingest queue running "
            "(`twinops up`, or `twinops worker -Q ingest`)?"
        )
    return (
        "Waiting for the ingest worker to take it (imports have a worker of their own; training never holds them up)."
    )


# --- proposal review ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewMove:
    """One MV of a proposal as the engineer reviews it: where it is, where it goes, and every limit on the way."""

    name: str
    unit: str
    current: float | None
    proposed: float
    low: float | None
    high: float | None
    max_move: float | None
    ramp_per_min: float | None
    largest_move: float  # furthest the plan takes the setpoint from the current one
    dual_above: float | None  # beyond this move, two engineers must sign
    active: list[str]

    @property
    def move(self) -> float:
        return self.proposed - (self.current or 0.0)

    @property
    def needs_two(self) -> bool:
        return self.dual_above is not None and self.largest_move > self.dual_above


@dataclass(frozen=True)
class Change:
    """One thing that differs from the line's last approved proposal."""

    what: str
    before: str
    now: str


def proposal_or_404(line: Line, rec_id: int) -> Recommendation:
    """Return the line's proposal, or raise 404 when the line has no proposal of that id."""
    try:
        return recommendation_get(line=line, pk=rec_id)
    except Recommendation.DoesNotExist:
        raise Http404(f"{line.key} has no proposal {rec_id}") from None


def review_context(*, line: Line, rec_id: int, user: Any, now: datetime | None = None) -> dict[str, Any]:
    """Return everything the engineer needs to decide on one proposal in under a minute."""
    now = now or timezone.now()
    rec = proposal_or_404(line, rec_id)
    units = tag_units(line=line)
    signatures = list(rec.signatures.all())
    approvals = [s for s in signatures if s.meaning == "approved"]
    scale = approvals[0].scale if approvals else 1.0
    freshness = tag_freshness(line=line, now=now)
    names = {*rec.inputs.get("latest", {})}
    context: dict[str, Any] = {
        "line": line,
        "rec": rec,
        "now": now,
        "moves": review_moves(rec, units) if rec.has_proposal else [],
        "charts": rec_charts(rec, units),
        "signatures": signatures,
        "needed": signatures_needed(rec, scale=scale) if rec.has_proposal else 1,
        "approved_scale": scale if approvals else None,
        "approved_smaller": approved_smaller(rec),
        "freshness": [freshness[n] for n in sorted(names) if n in freshness],
        "stale": [f for n, f in freshness.items() if n in names and not f.fresh],
        "seconds_left": max(0.0, (rec.expires_at - now).total_seconds()),
        "signable": _signable(rec, line, user, now),
        "changes": changes_since_approved(rec),
        "twin_verdict": _twin_verdict(rec),
        **outcome_context(rec=rec, units=units),
        **release_context(rec=rec),
    }
    return context


def release_partial_context(*, line: Line, rec_id: int) -> dict[str, Any]:
    """Return what the polled release partial shows (not the whole review page: it is asked for every 2 s)."""
    rec = proposal_or_404(line, rec_id)
    return {"line": line, "rec": rec, **release_context(rec=rec)}


def release_context(*, rec: Recommendation) -> dict[str, Any]:
    """Return the release of a proposal (progress, each write and its read-back) for the review page's partial."""
    release = release_of(rec=rec)
    writes = release_writes(release=release) if release is not None else []
    return {
        "release": release,
        "release_writes": writes,
        "no_plc": release_no_plc(line=rec.line),
        "release_percent": round(100 * release.steps_done / release.steps) if release and release.steps else 0,
    }


def approved_smaller(rec: Recommendation) -> float | None:
    """Return the share of the moves an approval signed when it is below 100 % (that plan is released), else None."""
    scale = (rec.approved_plan or {}).get("scale")
    return float(scale) if scale is not None and float(scale) < 1.0 else None


def review_moves(rec: Recommendation, units: dict[str, str]) -> list[ReviewMove]:
    """Return the review table's rows: one per MV of a proposal with a plan (of the approved plan when smaller)."""
    plan, limits = rec.plan, rec.inputs.get("limits", {})
    current = rec.inputs.get("current_mv", {})
    scale = approved_smaller(rec)
    dual = dual_approval_moves(rec, scale=scale or 1.0)
    active = [str(a).split(":", 1) for a in plan.get("active_constraints", [])]
    mv_plan = (rec.approved_plan or {}).get("mv_plan") if scale is not None else plan.get("mv_plan")
    rows = []
    for name, steps in (mv_plan or {}).items():
        lim = limits.get(name, {})
        now_value = current.get(name)
        rows.append(
            ReviewMove(
                name=name,
                unit=units.get(name, ""),
                current=now_value,
                proposed=float(steps[0]) if scale is not None else float(plan["first_setpoint"][name]),
                low=lim.get("low"),
                high=lim.get("high"),
                max_move=lim.get("max_move_per_step"),
                ramp_per_min=lim.get("ramp_rate_per_min"),
                largest_move=max((abs(v - (now_value or 0.0)) for v in steps), default=0.0),
                dual_above=dual[name][1] if name in dual else None,
                active=[kind for tag, kind in active if tag == name],
            )
        )
    return rows


def changes_since_approved(rec: Recommendation) -> tuple[Recommendation | None, list[Change]]:
    """Return the line's last approved proposal before this one and what differs from it."""
    last = recommendation_last_approved(line=rec.line, before=rec)
    if last is None:
        return None, []
    changes = []
    if last.spec_version_id != rec.spec_version_id:
        changes.append(Change("line spec", _version(last.spec_version), _version(rec.spec_version)))
    if last.twin_version_id != rec.twin_version_id:
        changes.append(Change("twin", _version(last.twin_version), _version(rec.twin_version)))
    was = (last.approved_plan or {}).get("mv_plan") or {}
    for name, value in (rec.inputs.get("current_mv") or {}).items():
        if name in was and was[name]:
            changes.append(Change(f"{name} setpoint", f"{was[name][-1]:.4g} planned", f"{value:.4g} now"))
    return last, changes


def _version(v: Any) -> str:
    return "none" if v is None else f"v{v.version}"


def _signable(rec: Recommendation, line: Line, user: Any, now: datetime) -> str:
    """Return 'yes' when this user may sign now, else why not (shown beside the disabled buttons)."""
    if not user_can(user, "approve_proposal"):
        return "Only an engineer (or admin) can approve or reject proposals."
    if rec.status != "pending":
        return f"This proposal is {rec.get_status_display()}; there is nothing to sign."
    if rec.expires_at <= now:
        return "This proposal has expired; the next one comes within minutes."
    if line.mode != Line.Mode.ADVISORY:
        return f"The line is in {line.mode} mode: switch it to advisory on the line's page to sign proposals."
    if any(s.user_id == user.pk for s in rec.signatures.all()):
        return "You signed this proposal; a second engineer must sign it."
    return "yes"


def _twin_verdict(rec: Recommendation) -> str:
    v = rec.twin_version
    if v is None:
        return ""
    report = v.report or {}
    return str(report.get("reason") or ("promotable" if v.promotable else "not promotable"))
