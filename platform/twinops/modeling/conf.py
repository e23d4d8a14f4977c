"""Settings of the modeling app: read from Django settings, else the environment; malformed values fail loudly."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _positive(name: str, default: float) -> float:
    raw = getattr(settings, name, None)
    if raw is None:
        raw = os.environ.get(name, default)
    try:
        value = float(str(raw))
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ImproperlyConfigured(f"{name} must be > 0, not {value}")
    return value


def stale_after_s() -> float:
    """Return how long a running job may go without a heartbeat before its worker is presumed dead."""
    return _positive("TWINOPS_TRAIN_STALE_AFTER_S", 300.0)


def heartbeat_every_s() -> float:
    """Return the period of the heartbeat a training worker writes besides its per-epoch progress."""
    return min(30.0, stale_after_s() / 4)


def max_attempts() -> int:
    """Return how many times a job is started before a dead worker fails it instead of re-running it."""
    return int(_positive("TWINOPS_TRAIN_MAX_ATTEMPTS", 3))
