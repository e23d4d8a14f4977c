"""The `twinops` command: every Django management command plus TwinOps's own (`up`, `worker`, `bench`, …)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run a management command; `twinops help` lists them."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinops.config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["twinops", *(sys.argv[1:] if argv is None else argv)])
