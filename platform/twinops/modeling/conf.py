"""Settings of the modeling app: read from Django settings, else the environment; malformed values fail loudly."""

from __future__ import annotations

from twinops.config.env import parse_int, setting_positive, setting_positive_int, setting_raw


def stale_after_s() -> float:
    """Return how long a running job may go without a heartbeat before its worker is presumed dead."""
    return setting_positive("TWINOPS_TRAIN_STALE_AFTER_S", 300.0)


def heartbeat_every_s() -> float:
    """Return the period of the heartbeat a training worker writes besides its per-epoch progress."""
    return min(30.0, stale_after_s() / 4)


def max_attempts() -> int:
    """Return how many times a job is started before a dead worker fails it instead of re-running it."""
    return setting_positive_int("TWINOPS_TRAIN_MAX_ATTEMPTS", 3)


def resend_queued_after_s() -> float:
    """Return how long a job may stay queued before its message is presumed lost and sent again, seconds."""
    return setting_positive("TWINOPS_RESEND_QUEUED_AFTER_S", 600.0)


def retrain_every_h() -> int:
    """Return the retrain period in hours: a line with a promoted twin, no job requested for this long and this much
    new data since its newest version's window gets a training job (services.training_jobs_schedule); 0: off."""
    return parse_int("TWINOPS_RETRAIN_EVERY_H", setting_raw("TWINOPS_RETRAIN_EVERY_H", 24), minimum=0)
