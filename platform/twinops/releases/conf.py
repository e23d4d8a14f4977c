"""Settings of the releases app: Django settings, else the environment, else a default; bad values fail loudly."""

from __future__ import annotations

from twinops.config.env import setting_positive


def readback_timeout_s() -> float:
    """Return how long a written setpoint may take to read back equal, seconds."""
    return setting_positive("TWINOPS_RELEASE_READBACK_S", 2.0)


def start_tolerance() -> float:
    """Return how far an MV may sit from the proposal's starting point, as a fraction of its operating range."""
    return setting_positive("TWINOPS_RELEASE_START_TOLERANCE", 0.01)


def heartbeat_every_s() -> float:
    """Return how often the release agent changes each PLC's heartbeat, seconds."""
    return setting_positive("TWINOPS_RELEASE_HEARTBEAT_S", 2.0)
