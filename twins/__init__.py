"""Learned world models ("twins") of process lines: torch + numpy only, no platform imports.

Typical use by the platform::

    data = TwinDataset.from_arrays(cv=..., mv=..., dv=..., cv_names=..., mv_names=..., dv_names=...,
                                   sample_period_s=60.0)          # NaN -> bad sample automatically
    outcome = train_and_evaluate(data, TwinConfig(), on_progress=lambda epoch, total, losses: ...)
    outcome.report.to_dict()                                       # JSON; outcome.report.promotable
    save_checkpoint(outcome.twin, path); twin = load_checkpoint(path)   # CheckpointError subclasses on failure
    meta, arrays = export_arrays(twin)                             # docs/twin-export.md
    z0 = twin.initial_state(recent_history)                        # (M, nz) for the optimizer
    z0 = estimate_state(twin, recent_history)                      # the same, fitted to the CVs measured since

Refusals raise InsufficientDataError with a message naming what is missing.
"""

from twins.baselines import LinearARX, Persistence, Record, fit_linear
from twins.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from twins.config import TwinConfig
from twins.data import (
    DataSplit,
    InsufficientDataError,
    Normalisation,
    TwinDataset,
    check_trainable,
    split_by_time,
    split_rows,
)
from twins.estimation import MheSettings, estimate_latent, estimate_state
from twins.evaluate import EvaluationReport, Incumbent, Scores, evaluate
from twins.export import export_arrays, save_export
from twins.innovation import InnovationScore, fit_innovation_limits, innovation_scores
from twins.pipeline import TrainingOutcome, train_and_evaluate
from twins.train import train_twin
from twins.twin import Forecast, InnovationLimits, Twin

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "DataSplit",
    "EvaluationReport",
    "Forecast",
    "IncompatibleCheckpointError",
    "Incumbent",
    "InnovationLimits",
    "InnovationScore",
    "InsufficientDataError",
    "LinearARX",
    "MheSettings",
    "Normalisation",
    "Persistence",
    "Record",
    "Scores",
    "TrainingOutcome",
    "Twin",
    "TwinConfig",
    "TwinDataset",
    "check_trainable",
    "estimate_latent",
    "estimate_state",
    "evaluate",
    "export_arrays",
    "fit_innovation_limits",
    "fit_linear",
    "innovation_scores",
    "load_checkpoint",
    "save_checkpoint",
    "save_export",
    "split_by_time",
    "split_rows",
    "train_and_evaluate",
    "train_twin",
]
