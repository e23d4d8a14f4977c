"""Model integrity: is the twin wrong now? Its recent prediction errors against the thresholds it was trained with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from twinops.lines.models import Line
from twinops.recommendations.selectors import recent_window
from twins import Twin, innovation_scores

NAMED_MOST = 3  # CVs named in a reason, largest first


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
