"""Per-process cache of loaded twins and built MPC controllers: built once per (line, twin version), warm-started after."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any

import numpy as np

from optimizer import MpcController, MpcSettings, MpcSpec
from optimizer.disturbances import DvForecastModel, dv_forecast_fit
from twinops.lines.models import Line
from twinops.modeling.models import TwinVersion
from twinops.modeling.selectors import twin_load
from twinops.telemetry.selectors import training_window
from twins import Twin, export_arrays

MAX_CACHED = 16  # controllers (and twins) kept per worker process; a plant has a handful of lines

_lock = threading.Lock()
_twins: OrderedDict[tuple[int, str], Twin] = OrderedDict()
_controllers: OrderedDict[tuple[Any, ...], MpcController] = OrderedDict()
_dv_models: OrderedDict[tuple[Any, ...], DvForecastModel] = OrderedDict()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MAX_CACHED:
        cache.popitem(last=False)


def twin_cached(*, version: TwinVersion) -> Twin:
    """Return the version's twin, loading its checkpoint only the first time; raise CheckpointError if refused."""
    key = (version.pk, version.checkpoint_sha256)
    with _lock:
        if key in _twins:
            _twins.move_to_end(key)
            return _twins[key]
    twin = twin_load(version=version)
    with _lock:
        _remember(_twins, key, twin)
    return twin


def controller_cached(*, version: TwinVersion, twin: Twin, spec: MpcSpec, settings: MpcSettings) -> MpcController:
    """Return the controller of a twin version for a spec's structure and settings, building it the first time."""
    # Limits, prices and targets are passed per solve; only what fixes the problem's shape is part of the key.
    key = (version.line_id, version.pk, version.checkpoint_sha256, spec.structure, spec.sample_period_s, repr(settings))
    with _lock:
        if key in _controllers:
            _controllers.move_to_end(key)
            return _controllers[key]
    meta, arrays = export_arrays(twin)
    controller = MpcController.from_export(meta, arrays, spec, settings)
    with _lock:
        _remember(_controllers, key, controller)
    return controller


def dv_model_cached(*, line: Line, version: TwinVersion, twin: Twin, horizon: int) -> DvForecastModel:
    """Return the DV forecast fitted on the twin version's training window (read and fitted the first time)."""
    key = (version.pk, version.checkpoint_sha256, horizon)
    with _lock:
        if key in _dv_models:
            _dv_models.move_to_end(key)
            return _dv_models[key]
    period = float(line.sample_period_s)
    window = training_window(
        line=line,
        start=version.data_start,
        end=version.data_end + timedelta(seconds=period),
        tags=list(twin.dv_names),
    )
    values = np.where(np.asarray(window.mask, dtype=bool), np.asarray(window.values, dtype=float), np.nan)
    model = dv_forecast_fit(values.reshape(-1, len(twin.dv_names)), twin.dv_names, horizon)
    with _lock:
        _remember(_dv_models, key, model)
    return model


def caches_clear() -> None:
    """Forget every cached twin, controller and DV forecast (tests; a worker never needs to)."""
    with _lock:
        _twins.clear()
        _controllers.clear()
        _dv_models.clear()
