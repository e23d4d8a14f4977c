"""`twinops collect LINE --url opc.tcp://…`: collect a line's tags live from an OPC UA server until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from twinops.config.embedded import data_home
from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.telemetry.collector import Collector, CollectorConfig


class Command(BaseCommand):
    help = "Subscribe to a line's tags (their OPC UA node ids) and store every change through the ingest service."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("line", help="the line's key")
        parser.add_argument("--url", required=True, help="server endpoint, opc.tcp://host:port/path")
        parser.add_argument("--username")
        parser.add_argument("--password", help="or set TWINOPS_OPCUA_PASSWORD")
        parser.add_argument(
            "--fingerprint",
            help="SHA-256 fingerprint of the server certificate (pinned; required for Basic256Sha256 SignAndEncrypt)",
        )
        parser.add_argument(
            "--cert-dir",
            type=Path,
            help="directory for this client's certificate and key (created on first use); default <TWINOPS_HOME>/opcua",
        )
        parser.add_argument("--insecure", action="store_true", help="security mode None: development only")
        parser.add_argument("--flush-ms", type=int, default=1000, help="flush the buffer at least this often")
        parser.add_argument("--flush-values", type=int, default=5000, help="or when this many values are buffered")
        parser.add_argument("--publishing-ms", type=int, default=200, help="subscription publishing interval")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            line = line_get(key=opts["line"])
        except Line.DoesNotExist:
            raise CommandError(f"no line {opts['line']!r}") from None
        if not opts["insecure"] and not opts["fingerprint"]:
            raise CommandError("give --fingerprint of the server certificate (or --insecure for development)")
        config = CollectorConfig(
            url=opts["url"],
            flush_ms=opts["flush_ms"],
            flush_values=opts["flush_values"],
            publishing_ms=opts["publishing_ms"],
            username=opts["username"],
            password=opts["password"] or os.environ.get("TWINOPS_OPCUA_PASSWORD"),
            insecure=opts["insecure"],
            fingerprint=opts["fingerprint"],
            cert_dir=opts["cert_dir"] or data_home() / "opcua",
            spool=data_home() / "spool" / f"collector-{line.key}.jsonl",  # what a killed collector had not stored
        )
        try:
            collector = Collector(line=line, config=config)
        except ValueError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"Collecting {len(collector.names)} tags of {line.key} from {config.url}; Ctrl-C stops.")
        asyncio.run(self._run(collector))
        self.stdout.write(f"Stopped; {collector.stored:,} new samples stored.")

    async def _run(self, collector: Collector) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await collector.run(stop)
