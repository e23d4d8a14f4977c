"""Settings of the audit app: where the signing key and the anchor log live, outside the database."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from twinops.config.embedded import data_home
from twinops.config.env import parse_int, setting_raw


def _path(name: str, default: str) -> Path:
    raw = str(setting_raw(name, "")).strip()
    if raw == "":
        return data_home() / default
    path = Path(raw).expanduser()
    if path.exists() and path.is_dir():
        raise ImproperlyConfigured(f"{name} must name a file, not the directory {raw!r}")
    return path


def signing_key_path() -> Path:
    """Return the Ed25519 key file that signs the chain head (`TWINOPS_AUDIT_SIGNING_KEY`)."""
    return _path("TWINOPS_AUDIT_SIGNING_KEY", "audit-signing.key")


def anchor_log_path() -> Path:
    """Return the JSON-lines file of signed chain heads (`TWINOPS_AUDIT_ANCHOR_LOG`)."""
    return _path("TWINOPS_AUDIT_ANCHOR_LOG", "audit-anchors.jsonl")


def verify_read_ahead() -> int:
    """Return how many batches a verification checks at once on connections of their own (0: none, one at a time).

    `TWINOPS_AUDIT_VERIFY_READ_AHEAD`; by default one per core, at most 4 (the database does nearly all of the work).
    """
    default = min(4, os.cpu_count() or 1)
    return parse_int(
        "TWINOPS_AUDIT_VERIFY_READ_AHEAD", setting_raw("TWINOPS_AUDIT_VERIFY_READ_AHEAD", default), minimum=0
    )
