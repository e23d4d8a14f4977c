"""Model integrity: is the twin wrong now? Its recent prediction errors against the thresholds it was trained with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from twinops.lines.models import Line
from twinops.recommendations.selectors import recent_window
from twins import Twin, TwinDataset, innovation_scores

NAMED_MOST = 3  # CVs named in a reason, largest first
# Consecutive sample periods with nothing stored for any of the twin's tags that make a gap in the data (the collector
# or the platform was down), not a sample missed by timing jitter. A twin whose recent predictions were made across such
# a gap is off because of the gap: its state was estimated from a window with a hole while the process moved on.
GAP_ROWS = 2


@dataclass(frozen=True)
class IntegrityCheck:
    """What the innovation check found: the record for the proposal's inputs and why to withhold ('' if not)."""

    record: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def _f(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def integrity_check(*, line: Line, twin: Twin, version: int, last: datetime) -> IntegrityCheck:
    """Score the twin's predictions of the last few samples ending at `last` against its stored thresholds."""
    limits = twin.innovation
    if limits is None:
        summary = (
            f"not checked: twin v{version} was trained before innovation thresholds existed, so whether it is "
            "wrong now is unknown; retrain it to check its recent prediction errors"
        )
        return IntegrityCheck({"status": "unavailable", "summary": summary})
    window = recent_window(line=line, twin=twin, last=last, rows=twin.state_rows + limits.lookback)
    data = window.dataset
    if len(data) <= limits.lookback:
        summary = f"not checked: fewer than {limits.lookback + 1} samples in the recent window"
        return IntegrityCheck({"status": "unscored", "summary": summary})
    score = innovation_scores(twin, data, np.array([len(data) - 1]))
    combined, per_cv = float(score.combined[0]), score.per_cv[0]
    rate = f"{100 * limits.false_alarm_rate:g} %"
    record: dict[str, Any] = {
        "combined": _f(combined),
        "threshold": limits.combined,
        "false_alarm_rate": limits.false_alarm_rate,
        "lookback": limits.lookback,
        "per_cv": {
            n: {"score": _f(float(per_cv[i])), "threshold": float(limits.per_cv[i])}
            for i, n in enumerate(twin.cv_names)
        },
    }
    if not math.isfinite(combined):
        summary = f"not checked: no CV measured over the last {limits.lookback} samples"
        return IntegrityCheck(record | {"status": "unscored", "summary": summary})
    words = (
        f"{combined:.2f} over the last {limits.lookback} samples (threshold {limits.combined:.2f}, set for {rate} "
        "false alarms on normal data; 1 = the calibrated band's edge)"
    )
    if combined <= limits.combined:
        return IntegrityCheck(record | {"status": "ok", "summary": words})
    gap = _gap(data, start=window.start)
    if gap is not None:
        gap_start, gap_end, rows, clear = gap
        since = " (the window's first sample; it may have begun earlier)" if gap_start == window.start else ""
        summary = (
            f"not judged: {words}, but the data has a gap inside the window these predictions were made from; "
            f"judged again from {clear.isoformat()}"
        )
        problem = (
            f"a gap in the data: nothing was stored for the twin's tags from {gap_start.isoformat()}{since} to "
            f"{gap_end.isoformat()} ({rows} samples), inside the window the twin's recent predictions and its state "
            f"were estimated from, so its recent errors ({combined:.2f}, threshold {limits.combined:.2f}) cannot "
            f"tell a fault from the gap. Proposals are checked again once the window is past it, from "
            f"{clear.isoformat()}; if data is still missing, the collector or its source needs a look"
        )
        gap_record = {"start": gap_start.isoformat(), "end": gap_end.isoformat(), "samples": rows}
        return IntegrityCheck(record | {"status": "gap", "summary": summary, "gap": gap_record}, problem)
    ratio = per_cv / limits.per_cv
    order = [i for i in np.argsort(-np.nan_to_num(ratio, nan=-np.inf)) if np.isfinite(ratio[i])]
    named = [i for i in order if ratio[i] > 1.0] or order[:1]
    cvs = ", ".join(
        f"{twin.cv_names[i]} {per_cv[i]:.2f} (threshold {limits.per_cv[i]:.2f})" for i in named[:NAMED_MOST]
    )
    problem = (
        f"the twin is wrong now: the measured CVs left what it predicted for the last {limits.lookback} samples "
        f"— {cvs}; combined score {words}. A sensor or the process may be faulty"
    )
    return IntegrityCheck(
        record | {"status": "exceeded", "summary": words, "cvs": [twin.cv_names[i] for i in named]}, problem
    )


def _gap(data: TwinDataset, *, start: datetime) -> tuple[datetime, datetime, int, datetime] | None:
    """Return the newest run of at least GAP_ROWS samples with nothing stored for any tag (its first and last sample
    time, its length and when the window will be past it), or None."""
    stored = data.cv_mask.any(axis=1) | data.mv_mask.any(axis=1) | data.dv_mask.any(axis=1)
    empty = np.flatnonzero(~stored)
    if len(empty) < GAP_ROWS:
        return None
    period = timedelta(seconds=float(data.sample_period_s))
    # runs of consecutive empty rows, newest first
    breaks = np.flatnonzero(np.diff(empty) > 1)
    runs = np.split(empty, breaks + 1)
    for run in reversed(runs):
        if len(run) >= GAP_ROWS:
            first, last = int(run[0]), int(run[-1])
            # The window of len(data) rows ends at the newest sample: it is past row `last` after last + 1 more.
            return start + first * period, start + last * period, len(run), start + (len(data) + last) * period
    return None
