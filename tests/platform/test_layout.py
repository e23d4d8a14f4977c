"""The source layout must not shadow the standard library or break the package boundaries."""

import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_platform_directory_is_not_a_package_shadowing_the_standard_library() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert callable(platform.system) and platform.system()  # still the standard library module


def test_framework_free_packages_keep_their_import_boundaries() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
