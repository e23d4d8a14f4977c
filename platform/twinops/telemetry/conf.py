"""Settings of the telemetry app: read from Django settings, else the environment; malformed values fail loudly."""

from __future__ import annotations

from twinops.config.env import setting_positive


def stale_periods() -> float:
    """Return after how many line sample periods without a good sample a tag's data count as stale (not fresh)."""
    return setting_positive("TWINOPS_STALE_PERIODS", 3.0)
