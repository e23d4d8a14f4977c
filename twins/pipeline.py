"""One call for the platform: split, train the twin and the baselines, evaluate."""

from __future__ import annotations

from dataclasses import dataclass

from twins.baselines import LinearARX, Persistence, Record, fit_linear
from twins.config import TwinConfig
from twins.data import DataSplit, TwinDataset, split_by_time
from twins.evaluate import EvaluationReport, Incumbent, evaluate
from twins.train import PhaseCallback, ProgressCallback, train_twin
from twins.twin import Twin

EVALUATING = "evaluating against the baselines"  # the phase after training (twins.train names those within it)


@dataclass(frozen=True)
class TrainingOutcome:
    """A trained twin, its baselines and the evaluation report that decides promotion."""

    twin: Twin
    persistence: Persistence
    linear: LinearARX
    report: EvaluationReport
    split: DataSplit


def train_and_evaluate(
    data: TwinDataset | DataSplit,
    config: TwinConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    device: str | None = None,
    cpu_threads: int | None = 1,
    on_phase: PhaseCallback | None = None,
    incumbent: Incumbent | None = None,
) -> TrainingOutcome:
    """Train a twin and its baselines on a record (split 70/15/15 by time unless given) and evaluate on test.

    An incumbent (the line's promoted twin) is scored beside the baselines on the same test segment.
    """
    split = data if isinstance(data, DataSplit) else split_by_time(data)
    twin = train_twin(split, config, on_progress=on_progress, device=device, cpu_threads=cpu_threads, on_phase=on_phase)
    if on_phase is not None:
        on_phase(EVALUATING)
    rec = Record.build(split, twin.norm)
    persistence, linear = Persistence(), fit_linear(rec, split)
    report = evaluate(twin, split, [persistence, linear], rec, incumbent, on_phase)
    return TrainingOutcome(twin, persistence, linear, report, split)
