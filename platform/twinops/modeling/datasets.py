"""Turn a line's telemetry training window into the twins data contract (a TwinDataset) with its timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from twinops.lines.models import Line
from twinops.telemetry.selectors import TrainingWindow, training_window
from twins import InsufficientDataError, TwinDataset


@dataclass(frozen=True)
class LineRecord:
    """An aligned record of a line ready for training, and the time of each row."""

    dataset: TwinDataset
    timestamps: list[datetime]  # (T,) UTC, one per row


def record_from_window(window: TrainingWindow, *, sample_period_s: float) -> LineRecord:
    """Split a telemetry TrainingWindow's columns by role (CV, MV, DV) into a TwinDataset; bad samples masked."""
    values = np.asarray(window.values, dtype=np.float64)  # (T, n_tags)
    mask = np.asarray(window.mask, dtype=bool)  # (T, n_tags), True = good
    names, roles = list(window.tags), [str(r) for r in window.roles]
    cols = {role: [i for i, r in enumerate(roles) if r == role] for role in ("CV", "MV", "DV")}
    missing = [role for role in ("CV", "MV") if not cols[role]]
    if missing:
        raise InsufficientDataError(f"the line has no active {' and no '.join(missing)} tag: a twin needs both")
    if values.shape[0] == 0:
        raise InsufficientDataError("too little data: the training window holds no samples")

    def part(role: str) -> dict[str, Any]:
        idx = cols[role]
        return {"values": values[:, idx], "mask": mask[:, idx], "names": [names[i] for i in idx]}

    cv, mv, dv = part("CV"), part("MV"), part("DV")
    dataset = TwinDataset.from_arrays(
        cv=cv["values"],
        cv_mask=cv["mask"],
        cv_names=cv["names"],
        mv=mv["values"],
        mv_mask=mv["mask"],
        mv_names=mv["names"],
        dv=dv["values"],
        dv_mask=dv["mask"],
        dv_names=dv["names"],
        sample_period_s=sample_period_s,
    )
    return LineRecord(dataset=dataset, timestamps=list(window.timestamps))


def line_record_load(*, line: Line, start: datetime | None, end: datetime | None) -> LineRecord:
    """Load the aligned training window of a line from telemetry (at the line's sample period)."""
    window = training_window(line=line, start=start, end=end)
    return record_from_window(window, sample_period_s=float(line.sample_period_s))
