"""Learned world models ("twins") of process lines: torch + numpy only, no platform imports."""

from twins.baselines import LinearARX, Persistence, Record, fit_linear
from twins.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from twins.config import TwinConfig
from twins.data import DataSplit, InsufficientDataError, Normalisation, TwinDataset, check_trainable, split_by_time
from twins.evaluate import EvaluationReport, Scores, evaluate
from twins.export import export_arrays, save_export
from twins.pipeline import TrainingOutcome, train_and_evaluate
from twins.train import train_twin
from twins.twin import Forecast, Twin

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "DataSplit",
    "EvaluationReport",
    "Forecast",
    "IncompatibleCheckpointError",
    "InsufficientDataError",
    "LinearARX",
    "Normalisation",
    "Persistence",
    "Record",
    "Scores",
    "TrainingOutcome",
    "Twin",
    "TwinConfig",
    "TwinDataset",
    "check_trainable",
    "evaluate",
    "export_arrays",
    "fit_linear",
    "load_checkpoint",
    "save_checkpoint",
    "save_export",
    "split_by_time",
    "train_and_evaluate",
    "train_twin",
]
