"""`twinops release-agent LINE --url opc.tcp://…`: write the PLC's heartbeat and release approved proposals to it."""

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
from twinops.releases.agent import AgentConfig, ReleaseAgent


class Command(BaseCommand):
    help = (
        "Hold a pinned SignAndEncrypt session to a line's PLC, change its heartbeat every few seconds, and release "
        "approved proposals to it one step per sample period, each re-checked, written and read back."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("line", help="the line's key")
        parser.add_argument("--url", required=True, help="PLC endpoint, opc.tcp://host:port/path")
        parser.add_argument("--username", help="a PLC account that may write setpoints (not the collector's)")
        parser.add_argument("--fingerprint", help="SHA-256 fingerprint of the PLC's certificate (pinned)")
        parser.add_argument(
            "--cert-dir", type=Path, help="this client's certificate and key; default <TWINOPS_HOME>/opcua"
        )
        parser.add_argument("--insecure", action="store_true", help="security mode None: development only")
        parser.add_argument(
            "--speed", type=float, default=1.0, help="plant seconds per wall second (an accelerated simulated plant)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            line = line_get(key=opts["line"])
        except Line.DoesNotExist:
            raise CommandError(f"no line {opts['line']!r}") from None
        if not opts["insecure"] and not opts["fingerprint"]:
            raise CommandError("give --fingerprint of the PLC's certificate (or --insecure for development)")
        config = AgentConfig(
            url=opts["url"],
            fingerprint=opts["fingerprint"],
            cert_dir=opts["cert_dir"] or data_home() / "opcua",
            username=opts["username"],
            password=os.environ.get("TWINOPS_OPCUA_WRITE_PASSWORD"),
            insecure=opts["insecure"],
            speed=opts["speed"],
        )
        try:
            agent = ReleaseAgent(line=line, config=config)
        except ValueError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"Release agent of {line.key} on {config.url}; Ctrl-C stops (the PLC then falls back).")
        asyncio.run(self._run(agent))
        self.stdout.write(f"Stopped; {agent.writes:,} setpoint writes sent.")

    async def _run(self, agent: ReleaseAgent) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)
