"""The `twinops` command as a newcomer meets it: a fresh TWINOPS_HOME just works, mistakes end in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "platform" / "lines" / "specs" / "cascaded_tanks.yaml"
NO_TERMINAL = "CommandError: no terminal to ask for the password: give it on standard input with --password-stdin"


def _twinops(*args: str, home: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command without a terminal; with home, on that TWINOPS_HOME's own embedded servers."""
    env = dict(os.environ)
    if home is not None:
        env = {k: v for k, v in env.items() if k not in {"DATABASE_URL", "REDIS_URL"}} | {"TWINOPS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "twinops", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_a_database_command_on_a_fresh_home_migrates_the_embedded_database_first(tmp_path: Path) -> None:
    first = _twinops("line", "onboard", str(SPEC), "--reason", "first try", home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Onboarded line cascaded-tanks" in first.stdout
    assert first.stderr.startswith("Preparing the embedded database: applying") and "Traceback" not in first.stderr
    added = _twinops(
        "user",
        "add",
        "erin",
        "--role",
        "engineer",
        "--password-stdin",
        home=tmp_path,
        stdin="a-long-enough-passphrase\n",
    )
    assert (added.returncode, added.stdout.strip(), added.stderr) == (0, "Created erin (engineer).", "")
    listed = _twinops("line", "list", home=tmp_path)
    assert listed.returncode == 0 and "cascaded-tanks" in listed.stdout
    assert listed.stderr == ""  # migrated once, not on every command


def test_user_add_without_a_terminal_or_password_stdin_fails_in_one_line() -> None:
    result = _twinops("user", "add", "erin", "--role", "engineer")
    assert result.returncode == 1
    assert result.stderr.strip() == NO_TERMINAL
