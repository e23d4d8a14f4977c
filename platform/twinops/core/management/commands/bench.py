"""`twinops bench NAME [--json] [--quick] [--seeds 31,32] [--lines heat-train]`: run a benchmark from bench/ and print its figures."""

from __future__ import annotations

import importlib
import inspect
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
        parser.add_argument(
            "--seeds",
            help="comma-separated reported seeds, for the benches that run over seeds (e.g. closedloop, learning): "
            "only these, to split a run of hours across machines or days",
        )
        parser.add_argument(
            "--lines",
            help="comma-separated simulated lines, for the benches that run over lines (e.g. learning): only these",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        name = opts["name"]
        if name not in available():
            raise CommandError(f"no benchmark {name!r}; available: {', '.join(available())}")
        module = importlib.import_module(f"bench.{name}")
        kwargs: dict[str, Any] = {"quick": opts["quick"]}
        for option in ("seeds", "lines"):
            if opts[option] is None:
                continue
            if option not in inspect.signature(module.run).parameters:
                raise CommandError(f"bench {name} does not run over {option}: leave out --{option}")
            try:
                kwargs[option] = tuple(int(s) if option == "seeds" else s for s in opts[option].split(","))
            except ValueError as exc:  # a seed that is not a number
                raise CommandError(f"--{option} {opts[option]}: {exc}") from None
        asked = " ".join(f"--{o} {opts[o]}" for o in ("seeds", "lines") if opts[o] is not None)
        try:
            result = module.run(**kwargs)
        except ValueError as exc:
            if not asked:
                raise
            raise CommandError(f"{asked}: {exc}") from None  # a tuning seed never reported, a line it does not have
        if opts["json"]:
            self.stdout.write(json.dumps(result, sort_keys=True))
            return
        width = max(len(k) for k in result) if result else 0
        for key, value in result.items():
            self.stdout.write(f"{key:<{width}}  {value}")
