"""Settings of the telemetry app: read from Django settings, else the environment; malformed values fail loudly."""

from __future__ import annotations

from dataclasses import dataclass

from twinops.config.env import setting_positive, setting_positive_int


@dataclass(frozen=True)
class ExpandLimits:
    """How much a history file or API body may hold once decompressed; beyond either, nothing is stored."""

    max_bytes: int  # decompressed bytes (a gzip'd CSV expands; Parquet: the row groups' uncompressed size)
    max_rows: int  # data rows (CSV lines after the header, Parquet rows)
    bytes_variable: str = ""  # the setting that raises `max_bytes`, named in the refusal
    rows_variable: str = ""


def api_limits() -> ExpandLimits:
    """Return the limits on one ingest API request once decompressed."""
    return ExpandLimits(
        max_bytes=setting_positive_int("TWINOPS_INGEST_API_MAX_EXPANDED_BYTES", 64 << 20),
        max_rows=setting_positive_int("TWINOPS_INGEST_API_MAX_ROWS", 1_000_000),
        bytes_variable="TWINOPS_INGEST_API_MAX_EXPANDED_BYTES",
        rows_variable="TWINOPS_INGEST_API_MAX_ROWS",
    )


def history_limits() -> ExpandLimits:
    """Return the limits on one history file (web upload or `twinops line onboard --history`) once decompressed."""
    return ExpandLimits(
        max_bytes=setting_positive_int("TWINOPS_HISTORY_MAX_EXPANDED_BYTES", 16 << 30),
        max_rows=setting_positive_int("TWINOPS_HISTORY_MAX_ROWS", 200_000_000),
        bytes_variable="TWINOPS_HISTORY_MAX_EXPANDED_BYTES",
        rows_variable="TWINOPS_HISTORY_MAX_ROWS",
    )


def future_margin_s() -> float:
    """Return how far ahead of now a sample's timestamp may be (clock skew between plant and server) and be stored."""
    return setting_positive("TWINOPS_INGEST_FUTURE_MARGIN_S", 300.0)


def stale_periods() -> float:
    """Return after how many line sample periods without a good sample a tag's data count as stale (not fresh)."""
    return setting_positive("TWINOPS_STALE_PERIODS", 3.0)


def import_max_attempts() -> int:
    """Return how many times an import job is started before a worker that keeps dying fails it instead."""
    return setting_positive_int("TWINOPS_IMPORT_MAX_ATTEMPTS", 3)


def resend_queued_after_s() -> float:
    """Return how long a job may stay queued before its message is presumed lost and sent again, seconds."""
    return setting_positive("TWINOPS_RESEND_QUEUED_AFTER_S", 600.0)
