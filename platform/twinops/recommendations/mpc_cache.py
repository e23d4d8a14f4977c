"""Per-process cache of loaded twins and built MPC controllers: built once per (line, twin version), warm-started after."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from optimizer import MpcController, MpcSettings, MpcSpec
from twinops.modeling.models import TwinVersion
from twinops.modeling.selectors import twin_load
from twins import Twin, export_arrays

MAX_CACHED = 16  # controllers (and twins) kept per worker process; a plant has a handful of lines

_lock = threading.Lock()
_twins: OrderedDict[tuple[int, str], Twin] = OrderedDict()
_controllers: OrderedDict[tuple[Any, ...], MpcController] = OrderedDict()


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


def caches_clear() -> None:
    """Forget every cached twin and controller (tests; a worker never needs to)."""
    with _lock:
        _twins.clear()
        _controllers.clear()
