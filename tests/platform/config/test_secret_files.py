"""Secret files (the development secret key, the demo PLC password) are born readable by their owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinops.config.secret_files import secret_file_text
from twinops.demo.services import demo_operator_password, demo_reader_password


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Let new files be world-readable unless their creator says otherwise (umask 000)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_file_is_created_0600_even_under_an_open_umask(tmp_path, open_umask) -> None:
    path = tmp_path / "home" / "secret_key"
    assert secret_file_text(path, lambda: "s3cret") == "s3cret"
    assert _mode(path) == 0o600
    assert secret_file_text(path, lambda: "another") == "s3cret"  # made once, then kept
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no temporary file left


def test_a_secret_file_is_never_visible_before_it_is_complete_and_private(tmp_path, open_umask) -> None:
    path = tmp_path / "secret_key"
    seen: list[bool] = []

    def make() -> str:
        seen.append(path.exists())  # while the secret is being written, the real path does not exist yet
        return "s3cret"

    secret_file_text(path, make)
    assert seen == [False] and _mode(path) == 0o600


def test_the_demo_plc_password_file_is_0600(tmp_path, open_umask) -> None:
    password = demo_operator_password(tmp_path / "demo")
    assert len(password) >= 20
    assert _mode(tmp_path / "demo" / "plc-operator-password") == 0o600


def test_the_demo_collectors_have_a_read_only_plc_password_of_their_own_in_a_0600_file(tmp_path, open_umask) -> None:
    reader = demo_reader_password(tmp_path / "demo")
    assert len(reader) >= 20 and reader != demo_operator_password(tmp_path / "demo")
    assert _mode(tmp_path / "demo" / "plc-reader-password") == 0o600
    assert demo_reader_password(tmp_path / "demo") == reader  # kept: a restarted PLC and collector still agree
