"""Settings of the web app: read from Django settings, else the environment; malformed values fail loudly."""

from __future__ import annotations

from twinops.config.env import setting_positive


def upload_max_age_h() -> float:
    """Return the hours after which an uploaded history file that no unfinished import needs is deleted."""
    return setting_positive("TWINOPS_UPLOAD_MAX_AGE_H", 24.0)
