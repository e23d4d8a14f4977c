"""Page data for the recommendation page: the list, and the selected proposal's moves table and charts."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.http import Http404
from django.utils import timezone

from twinops.lines.models import Line
from twinops.lines.selectors import tag_units
from twinops.modeling.selectors import training_jobs_active, twin_promoted
from twinops.recommendations import conf, plots, selectors
from twinops.recommendations.models import Outcome, Recommendation


def recommendation_context(*, line: Line, selected_id: int | None) -> dict[str, Any]:
    """Return a line's recommendations and the selected one (default the newest) with its moves and charts."""
    recs = selectors.recommendations_for_line(line=line)
    selected = recs[0] if recs else None
    if selected_id is not None:
        try:
            selected = selectors.recommendation_get(line=line, pk=selected_id)
        except Recommendation.DoesNotExist:
            raise Http404(f"{line.key} has no recommendation {selected_id}") from None
    context: dict[str, Any] = {
        "line": line,
        "recommendations": recs,
        "selected": selected,
        "now": timezone.now(),
        "every_s": conf.every_s(),
        "promoted": twin_promoted(line=line),
        "training": training_jobs_active(line=line),
    }
    if selected is not None:
        units = tag_units(line=line)
        context |= {
            "moves": move_rows(selected, units) if selected.has_proposal else [],
            "charts": charts(selected, units),
        }
    return context


@dataclass(frozen=True)
class MoveRow:
    """One MV of a proposal: current setpoint, proposed first setpoint and the limits it respects."""

    name: str
    unit: str
    current: float | None
    proposed: float
    move: float
    low: float | None
    high: float | None
    max_move: float | None
    active: list[str]  # constraints of this MV active somewhere in the plan ("mv_high", "max_move", …)


def move_rows(rec: Recommendation, units: dict[str, str]) -> list[MoveRow]:
    """Return the proposed-moves table of a recommendation with a proposal."""
    plan, limits = rec.plan, rec.inputs.get("limits", {})
    current = rec.inputs.get("current_mv", {})
    active = [str(a).split(":", 1) for a in plan.get("active_constraints", [])]
    return [
        MoveRow(
            name=name,
            unit=units.get(name, ""),
            current=current.get(name),
            proposed=plan["first_setpoint"][name],
            move=move,
            low=limits.get(name, {}).get("low"),
            high=limits.get(name, {}).get("high"),
            max_move=limits.get(name, {}).get("max_move_per_step"),
            active=[kind for tag, kind in active if tag == name],
        )
        for name, move in (plan.get("first_move") or {}).items()
    ]


def charts(rec: Recommendation, units: dict[str, str]) -> list[dict[str, Any]]:
    """Return the selected recommendation's figures (DOM id, label, figure): predicted CVs, then the MV plan."""
    if not rec.has_proposal:
        return []
    start: datetime = rec.window_end or rec.created_at
    limits, plan = rec.inputs.get("limits", {}), rec.plan
    cv = plots.cv_figure(
        result=plan,
        start=start,
        limits=limits,
        units=units,
        band=selectors.band_words(plan, rec.settings),
        current=rec.inputs.get("current_cv_estimate"),
    )
    mv = plots.mv_figure(result=plan, start=start, limits=limits, units=units, current=rec.inputs.get("current_mv", {}))
    return [
        {
            "id": f"reco-{rec.pk}-cv",
            "label": "Predicted CV trajectories with uncertainty bands and limits",
            "figure": cv,
        },
        {"id": f"reco-{rec.pk}-mv", "label": "Planned MV setpoints with limits", "figure": mv},
    ]


# --- outcomes and KPIs ----------------------------------------------------------------------------------------------
def outcome_context(*, rec: Recommendation, units: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the context of the outcome include (`recommendations/_outcome.html`): key `outcome`, or None."""
    outcome = selectors.outcome_of(rec=rec)
    if outcome is None:
        return {"outcome": None}
    units = units if units is not None else tag_units(line=rec.line)
    figure = plots.outcome_figure(
        outcome=outcome, units=units, marks=selectors.release_marks(rec=rec), limits=rec.inputs.get("limits", {})
    )
    rows = [
        OutcomeRow(
            cv=name,
            unit=units.get(name, ""),
            coverage=outcome.coverage_by_cv.get(name),
            mae=_mean_abs(outcome.error[name]),
            last_error=next((e for e in reversed(outcome.error[name]) if e is not None), None),
        )
        for name in sorted(outcome.error)
    ]
    return {
        "outcome": OutcomeView(
            record=outcome,
            rows=rows,
            figure=figure,
            chart_id=f"reco-{rec.pk}-outcome",
            released=outcome.compared_with == "plan",
        )
    }


@dataclass(frozen=True)
class OutcomeRow:
    """One CV of an outcome: band coverage and errors in the CV's unit."""

    cv: str
    unit: str
    coverage: float | None
    mae: float | None  # mean |measured - predicted| over the horizon
    last_error: float | None  # at the last measured step


@dataclass(frozen=True)
class OutcomeView:
    """A recorded outcome as the proposal page shows it."""

    record: Outcome
    rows: list[OutcomeRow]
    figure: dict[str, Any]
    chart_id: str
    released: bool


def _mean_abs(values: list[float | None]) -> float | None:
    seen = [abs(v) for v in values if v is not None]
    return sum(seen) / len(seen) if seen else None


KPI_PERIODS = {
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}
PROPOSAL_STATUSES = {"pending", "shadow", "approved", "rejected", "expired"}  # only pending proposals expire


def slot_category(rec: Recommendation) -> str:
    """Return what became of a recommendation slot: "proposal", or why there was none, in a few categories."""
    if rec.status in PROPOSAL_STATUSES:
        return "proposal"
    reason = rec.reason.lower()
    if rec.status == Recommendation.Status.FAILED:
        if reason.startswith("optimizer"):
            return "failed: optimizer found no plan"
        if reason.startswith("internal error"):
            return "failed: internal error"
        return "failed: twin or spec do not fit"
    for needle, label in (
        ("line is off", "withheld: line off"),
        ("no promoted twin", "withheld: no promoted twin"),
        ("a gap in the data", "withheld: data gap"),  # before the twin-wrong-now words: the gap explains the errors
        ("the twin is wrong now", "withheld: twin wrong now"),  # named first where the state is distrusted too
        ("ood score", "withheld: twin not trusted here"),
        ("ensemble spread", "withheld: twin not trusted here"),
        ("stale", "withheld: data stale or bad"),
        ("quality", "withheld: data stale or bad"),
        ("no sample", "withheld: data stale or bad"),
    ):
        if needle in reason:
            return label
    return "withheld: other"


@dataclass(frozen=True)
class KpiSummary:
    """The figures a controls engineer reads to decide whether to keep trusting the twin, over one period."""

    slots: int  # recommendation slots in the period (since the line's first recommendation in it)
    proposals: int
    proposal_share: float | None
    no_record: int  # slots without any recommendation (workers down, line off before it had a twin)
    approved: int
    rejected: int
    expired: int  # proposals nobody acted on in time (or superseded)
    approval_rate: float | None  # approved / (approved + rejected)
    median_decision_s: float | None
    outcomes: int
    coverage: float | None  # of all measured CV samples in the period's outcomes
    predicted_gain: float | None  # mean over released outcomes, currency per hour
    realized_gain: float | None


def kpi_context(*, line: Line, period: str, now: datetime | None = None) -> dict[str, Any]:
    """Return the KPI page of a line over one period ("24h", "7d" or "30d"): summary, withheld reasons, figures."""
    if period not in KPI_PERIODS:
        raise Http404(f"no KPI period {period!r}; choose one of {', '.join(KPI_PERIODS)}")
    now = now or timezone.now()
    label, span = KPI_PERIODS[period]
    since = now - span
    recs = selectors.recommendations_since(line=line, since=since)
    outcomes = selectors.outcomes_since(line=line, since=since)
    units = tag_units(line=line)
    every = conf.every_s()
    first = recs[0].slot if recs else now
    slots = max(len(recs), math.ceil((now - max(since, first)).total_seconds() / every)) if recs else 0
    by_category: dict[str, int] = {}
    for r in recs:
        by_category[slot_category(r)] = by_category.get(slot_category(r), 0) + 1
    proposals = by_category.get("proposal", 0)
    counts = sorted(by_category.items(), key=lambda kv: (kv[0] != "proposal", -kv[1], kv[0]))
    if slots > len(recs):
        counts.append(("no recommendation made", slots - len(recs)))
    status = [r.status for r in recs]
    approved, rejected = status.count("approved"), status.count("rejected")
    decisions = [
        (r.decided_at - r.created_at).total_seconds()
        for r in recs
        if r.decided_at and r.status in {"approved", "rejected"}
    ]
    measured = [
        (o.coverage, o.measured_share * o.horizon * len(o.predicted)) for o in outcomes if o.coverage is not None
    ]
    weight = sum(w for _, w in measured)
    released = [o for o in outcomes if o.compared_with == "plan" and o.predicted_gain_per_h is not None]
    realized = [o.realized_gain_per_h for o in released if o.realized_gain_per_h is not None]
    summary = KpiSummary(
        slots=slots,
        proposals=proposals,
        proposal_share=proposals / slots if slots else None,
        no_record=max(0, slots - len(recs)),
        approved=approved,
        rejected=rejected,
        expired=status.count("expired"),
        approval_rate=approved / (approved + rejected) if approved + rejected else None,
        median_decision_s=statistics.median(decisions) if decisions else None,
        outcomes=len(outcomes),
        coverage=sum(c * w for c, w in measured) / weight if weight else None,
        predicted_gain=statistics.fmean(o.predicted_gain_per_h for o in released) if released else None,  # type: ignore[misc]
        realized_gain=statistics.fmean(realized) if realized else None,
    )
    mae = _mae_by_step(outcomes)
    figures = [
        {"id": "kpi-slots", "label": "Recommendation slots by outcome", "figure": plots.slots_figure(counts=counts)}
    ]
    if outcomes:
        figures += [
            {
                "id": "kpi-error",
                "label": "Prediction error by horizon",
                "figure": plots.error_figure(mae=mae, period_s=float(line.sample_period_s), units=units),
            },
            {
                "id": "kpi-coverage",
                "label": "Band coverage per outcome",
                "figure": plots.coverage_figure(
                    starts=[o.start for o in outcomes],
                    coverage=[o.coverage for o in outcomes],
                    compared=[o.compared_with for o in outcomes],
                ),
            },
            {
                "id": "kpi-gain",
                "label": "Realized against predicted gain",
                "figure": plots.gain_figure(points=_gain_points(outcomes)),
            },
        ]
    return {
        "line": line,
        "period": period,
        "period_label": label,
        "periods": [(key, text) for key, (text, _) in KPI_PERIODS.items()],
        "since": since,
        "now": now,
        "summary": summary,
        "median_decision": _duration(summary.median_decision_s),
        "coverage_pct": f"{summary.coverage * 100:.0f}" if summary.coverage is not None else "",
        "counts": counts,
        "mae_rows": [(name, units.get(name, ""), values) for name, values in sorted(mae.items())],
        "figures": figures,
    }


def _duration(seconds: float | None) -> str:
    """Return a duration for people: "45 s", "1 min 30 s", "2 h 05 min"."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _mae_by_step(outcomes: list[Outcome]) -> dict[str, list[float | None]]:
    """Return each CV's mean |measured - predicted| per step ahead over the outcomes (None where never measured)."""
    sums: dict[str, list[list[float]]] = {}
    for o in outcomes:
        for name, errors in o.error.items():
            steps = sums.setdefault(name, [])
            steps.extend([] for _ in range(len(errors) - len(steps)))
            for k, e in enumerate(errors):
                if e is not None:
                    steps[k].append(abs(e))
    return {name: [sum(s) / len(s) if s else None for s in steps] for name, steps in sums.items()}


def _gain_points(outcomes: list[Outcome]) -> list[tuple[float, float, str]]:
    """Return (predicted, realized, kind) per outcome: gains for released plans, values for shadow (holding)."""
    points = []
    for o in outcomes:
        if o.compared_with == "plan":
            pair = (o.predicted_gain_per_h, o.realized_gain_per_h)
        else:
            pair = (o.predicted_value_per_h, o.realized_value_per_h)
        if pair[0] is not None and pair[1] is not None:
            points.append((float(pair[0]), float(pair[1]), o.compared_with))
    return points
