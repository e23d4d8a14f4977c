"""History of normal operation with step tests: random MV steps within test bands, held for varying times."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from plantsim.line import Line
from plantsim.realism import Realism
from plantsim.simulator import LineSimulator, build_simulator
from plantsim.spec import write_spec_yaml

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class StepTestPlan:
    """How the MVs are excited while the history is generated."""

    min_hold_s: float = 600.0  # shortest time a setpoint is held
    max_hold_s: float = 3 * 3600.0  # longest; holds are log-uniform in between
    back_to_nominal: float = 0.25  # chance a move returns the MV to its nominal setpoint (normal operation)
    settle_s: float = 3600.0  # nominal operation at the start, before the first step
    resolution: float = 0.02  # setpoints rounded to this fraction of the test band, as an engineer types them


@dataclass
class History:
    """A generated history: one row per sample period, one column per tag (NaN = bad value)."""

    line: Line
    timestamps: list[datetime]  # UTC, at the end of each sample period
    columns: list[str]  # tag names, in the line's order
    values: np.ndarray  # (N, n_tags) float64
    setpoint_moves: dict[str, int] = field(default_factory=dict)  # step-test moves per MV


def step_schedule(
    line: Line, duration_s: float, rng: np.random.Generator, plan: StepTestPlan
) -> dict[str, list[tuple[float, float]]]:
    """Return, per MV, the (time_s, setpoint) changes of a step-test campaign lasting duration_s."""
    schedule: dict[str, list[tuple[float, float]]] = {}
    for name in line.names("MV"):
        tuning = line.mv_tuning[name]
        low, high = tuning.test_band
        quantum = plan.resolution * (high - low)
        t, moves = plan.settle_s, []
        while t < duration_s:
            if rng.random() < plan.back_to_nominal:
                value = tuning.nominal
            else:
                value = round(float(rng.uniform(low, high)) / quantum) * quantum
            moves.append((t, min(max(value, low), high)))
            log_hold = rng.uniform(math.log(plan.min_hold_s), math.log(plan.max_hold_s))
            t += math.exp(log_hold)
        schedule[name] = moves
    return schedule


def generate_history(
    line_id: str,
    *,
    days: float,
    start: datetime,
    seed: int = 0,
    realism: Realism | None = None,
    plan: StepTestPlan | None = None,
    on_progress: ProgressCallback | None = None,
) -> History:
    """Simulate `days` of operation with step tests from `start` (UTC) and return the samples."""
    if days <= 0:
        raise ValueError(f"days must be positive, got {days!r}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    plan = plan or StepTestPlan()
    sim = build_simulator(line_id, seed=seed, realism=realism)
    n = int(round(days * 86400.0 / sim.line.sample_period_s))
    columns = [t.name for t in sim.line.tags]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    values, move_counts = run_step_tests(sim, n, columns, rng, plan, on_progress)
    dt = sim.line.sample_period_s
    start_utc = start.astimezone(UTC)
    stamps = [start_utc + timedelta(seconds=(k + 1) * dt) for k in range(n)]
    return History(line=sim.line, timestamps=stamps, columns=columns, values=values, setpoint_moves=move_counts)


def run_step_tests(
    sim: LineSimulator,
    n: int,
    columns: Sequence[str],
    rng: np.random.Generator,
    plan: StepTestPlan,
    on_progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Run `sim` for n sample periods through a step-test campaign drawn from rng.

    Returns the columns' samples (n, len(columns)), one row at the end of each period, and the moves per MV.
    """
    dt = sim.line.sample_period_s
    schedule = step_schedule(sim.line, n * dt, rng, plan)
    pending = {mv: list(reversed(moves)) for mv, moves in schedule.items()}  # pop() gives the next move
    values = np.empty((n, len(columns)))
    report_every = max(1, n // 200)
    for k in range(n):
        t_next = (k + 1) * dt
        for mv, moves in pending.items():
            while moves and moves[-1][0] < t_next:
                sim.write_setpoint(mv, moves.pop()[1])
        sample = sim.step(dt)
        values[k] = [sample.values[c] for c in columns]
        if on_progress is not None and ((k + 1) % report_every == 0 or k + 1 == n):
            on_progress(k + 1, n)
    return values, {mv: len(m) for mv, m in schedule.items()}


def write_history_csv(history: History, path: Path, *, bad_token: str = "") -> Path:
    """Write the history as a wide CSV (timestamp,<tag>,...; ISO-8601 UTC; bad values as bad_token)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(",".join(["timestamp", *history.columns]) + "\n")
        for stamp, row in zip(history.timestamps, history.values, strict=True):
            cells = [f"{v:.6g}" if math.isfinite(v) else bad_token for v in row.tolist()]
            f.write(stamp.strftime("%Y-%m-%dT%H:%M:%SZ") + "," + ",".join(cells) + "\n")
    os.replace(tmp, path)
    return path


def export_line(
    line_id: str,
    out_dir: Path,
    *,
    days: float,
    end: datetime,
    seed: int = 0,
    realism: Realism | None = None,
    on_progress: ProgressCallback | None = None,
    bad_token: str = "",
) -> tuple[Path, Path]:
    """Write `<line>.yaml` (spec) and `<line>.csv` (history ending at `end`) into out_dir; return both paths."""
    out_dir = Path(out_dir)
    history = generate_history(
        line_id, days=days, start=end - timedelta(days=days), seed=seed, realism=realism, on_progress=on_progress
    )
    spec_path = write_spec_yaml(history.line, out_dir / f"{line_id}.yaml")
    csv_path = write_history_csv(history, out_dir / f"{line_id}.csv", bad_token=bad_token)
    return spec_path, csv_path
