"""`twinops bench NAME [--json] [--quick]`: run a benchmark from bench/ and print its figures."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import bench


def available() -> list[str]:
    """List the benchmark names (modules of the `bench` package with a `run` function)."""
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


class Command(BaseCommand):
    help = "Run a benchmark; each measures its side-by-side baseline in the same run."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="benchmark name: " + ", ".join(available()))
        parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
        parser.add_argument("--quick", action="store_true", help="a small, fast version (a smoke test)")

    def handle(self, *args: Any, **opts: Any) -> None:
        name = opts["name"]
        if name not in available():
            raise CommandError(f"no benchmark {name!r}; available: {', '.join(available())}")
        module = importlib.import_module(f"bench.{name}")
        result = module.run(quick=opts["quick"])
        if opts["json"]:
            self.stdout.write(json.dumps(result, sort_keys=True))
            return
        width = max(len(k) for k in result) if result else 0
        for key, value in result.items():
            self.stdout.write(f"{key:<{width}}  {value}")
