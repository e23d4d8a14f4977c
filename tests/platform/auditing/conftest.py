"""Auditing fixtures: a signing key and anchor log of the test's own, outside the database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def anchor_files(tmp_path: Path, settings) -> tuple[Path, Path]:  # noqa: ANN001
    """Point the signing key and the anchor log at files in the test's tmp dir; return (key, log)."""
    key, log = tmp_path / "keys" / "audit-signing.key", tmp_path / "anchors.jsonl"
    settings.TWINOPS_AUDIT_SIGNING_KEY, settings.TWINOPS_AUDIT_ANCHOR_LOG = str(key), str(log)
    return key, log
