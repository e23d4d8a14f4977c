"""`twinops demo`: the whole platform running against a simulated plant behind real OPC UA PLCs."""

from __future__ import annotations

import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django import db
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from plantsim.certs import certificate_fingerprint
from twinops import processes
from twinops.config.embedded import data_home
from twinops.core.progress import ProgressBar
from twinops.demo.services import (
    demo_lines,
    demo_lines_onboard,
    demo_operator_password,
    demo_reader_password,
    demo_training_request,
    demo_twins_promote,
    demo_users_seed,
)
from twinops.lines.selectors import line_get
from twinops.opcua.certs import client_certificate_ensure
from twinops.releases.plc import plc_nodes
from twinops.releases.plc_link import PlcLink, plc_children

PROMOTE_EVERY_S = 5.0  # how often the demo looks for a newly trained first twin to promote


def _wait_port(host: str, port: int, procs: processes.Procs, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        processes.check_alive(procs)
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise processes.ProcessDied(f"the PLC did not open port {port} within {timeout_s:.0f} s")


class Command(BaseCommand):
    help = (
        "Run the demo: embedded database and broker, web, worker, beat, a simulated plant behind OPC UA PLCs, "
        "its lines onboarded with simulated history, live collection. Ctrl-C stops it; running it again resumes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000, help="web port")
        parser.add_argument("--plc-port", type=int, default=4840, help="first PLC's port; the next line uses +1")
        parser.add_argument("--days", type=float, default=4.0, help="days of simulated history to backfill")
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="plant time acceleration (above 1 the plant's clock runs ahead of the wall clock)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-train", action="store_true", help="do not ask for first twins")
        parser.add_argument(
            "--concurrency", type=int, default=2, help="pool processes of the ingest/optimize worker (training: 1)"
        )
        parser.add_argument(
            "--plc-published-log",
            type=Path,
            help="directory: each PLC appends every changed CV/DV value it publishes to <line>.tsv (bench chaos)",
        )
        parser.add_argument(
            "--heartbeat-timeout",
            type=float,
            default=30.0,
            help="seconds without a platform heartbeat (the release agents') before a PLC falls back to safe setpoints",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        processes.stop_on_signals()  # a service manager's SIGTERM or a closing terminal's SIGHUP: like Ctrl-C
        if settings.PRODUCTION:
            raise CommandError("the demo never runs with TWINOPS_ENV=production")
        warning = processes.exposure_warning(opts["host"])
        if warning:
            self.stderr.write(self.style.ERROR(warning))
        self.stdout.write("Applying migrations…")
        call_command("migrate", interactive=False, verbosity=0)
        logins = demo_users_seed()
        demo_dir = data_home() / "demo"
        bars: list[ProgressBar] = []

        def bar(label: str) -> ProgressBar:  # one line per step: end the previous bar before starting the next
            if bars:
                bars[-1].close()
            bars.append(ProgressBar(self.stderr, label=label))
            return bars[-1]

        onboarded = demo_lines_onboard(
            demo_dir=demo_dir, days=opts["days"], end=datetime.now(UTC), seed=opts["seed"], progress=bar
        )
        if bars:
            bars[-1].close()
        for d in onboarded:
            state = f"onboarded, {d.samples_imported:,} samples of history" if d.onboarded_now else "already onboarded"
            self.stdout.write(f"  {d.key}: {state}")

        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "twinops.config.settings"}
        password = demo_operator_password(demo_dir)
        procs: processes.Procs = []
        try:
            self._plant(opts, demo_dir, password, env, procs)
            url = processes.web_worker_beat(
                host=opts["host"],
                port=opts["port"],
                worker=True,
                beat=True,
                concurrency=opts["concurrency"],
                env=env,
                procs=procs,
                beat_schedule=str(data_home() / "celerybeat-schedule"),
            )
            asked = [] if opts["no_train"] else demo_training_request()
            self._banner(url, logins, asked)
            self._supervise(procs)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        except processes.ProcessDied as exc:
            raise CommandError(str(exc)) from None
        finally:
            processes.stop_all(procs)
        self.stdout.write("Stopped.")

    def _plant(
        self, opts: dict[str, Any], demo_dir: Path, password: str, env: dict[str, str], procs: processes.Procs
    ) -> None:
        """Start the PLCs (one OPC UA server per line) and a collector per line pinned to its certificate.

        Least privilege: each PLC trusts only the platform's client certificate, its collector logs in with the
        read-only account (a password of its own) and only the release agent with the operator account.
        """
        cert_dir = demo_dir / "plc-certs"
        client_cert_dir = data_home() / "opcua"  # what `collect` and `release-agent` present (their default)
        client_cert = client_certificate_ensure(client_cert_dir)
        reader_password = demo_reader_password(demo_dir)
        lines = demo_lines()
        cmd = [
            sys.executable,
            "-m",
            "plantsim",
            "serve",
            "--host",
            opts["host"],
            "--port",
            str(opts["plc_port"]),
            "--speed",
            str(opts["speed"]),
            "--cert-dir",
            str(cert_dir),
            "--seed",
            str(opts["seed"]),
            "--heartbeat-timeout",
            str(opts["heartbeat_timeout"]),
            "--trust-client",
            str(client_cert.cert),
        ]
        for key in lines:
            cmd += ["--line", key]
        if opts["plc_published_log"]:
            cmd += ["--published-log", str(opts["plc_published_log"])]
        plc_env = {**env, "PLANTSIM_OPERATOR_PASSWORD": password, "PLANTSIM_READER_PASSWORD": reader_password}
        processes.start("plc", cmd, plc_env, procs)
        for i, key in enumerate(lines):
            port = opts["plc_port"] + i
            _wait_port(opts["host"], port, procs)
            url = f"opc.tcp://{opts['host']}:{port}/twinops/{key}"
            fingerprint = certificate_fingerprint((cert_dir / f"{key}-server-cert.der").read_bytes())
            spec = line_get(key=key).current_spec
            link = PlcLink(
                line_key=key,
                url=url,
                fingerprint=fingerprint,
                write_account="operator",  # the PLC's account that may write setpoints: the release agent's
                write_password=password,
                read_account="collector",  # the PLC's read-only account: a collector never writes
                read_password=reader_password,
                cert_dir=client_cert_dir,
                speed=opts["speed"],
                release=spec is not None and plc_nodes(spec.document) is not None,  # older specs had no plc block
            )
            for child in plc_children(link):
                processes.start(child.name, child.cmd, {**env, **child.env}, procs)
            if not link.release:
                self.stdout.write(
                    f"  {key}: its spec has no plc block, so nothing is released to it (no release agent)"
                )
            self.stdout.write(f"  PLC {key}: {url} (SHA-256 {fingerprint[:16]}…)")

    def _supervise(self, procs: processes.Procs) -> None:
        """Watch the children until Ctrl-C; promote each line's first promotable twin as soon as it is trained."""
        while True:
            try:
                for key, version in demo_twins_promote():
                    self.stdout.write(
                        f"  {key}: twin v{version} promoted (the demo's audited action): proposals follow"
                    )
            except db.Error as exc:  # the database restarting is no reason to stop the demo: try again shortly
                self.stderr.write(f"  could not look for twins to promote: {exc}")
            deadline = time.monotonic() + PROMOTE_EVERY_S
            while time.monotonic() < deadline:
                for line in processes.keep_alive(procs):  # a child that died is restarted after its back-off
                    self.stderr.write(f"  {line}")
                time.sleep(0.5)
            db.close_old_connections()

    def _banner(self, url: str, logins: list[tuple[str, str, str]], asked: list[str]) -> None:
        self.stdout.write(self.style.SUCCESS(f"\nTwinOps demo is running at {url}"))
        for role, username, password in logins:
            self.stdout.write(f"  {role:<9} login: {username} / {password}")
        self.stdout.write(f"  database: {settings.DATABASES['default']['NAME']} via {os.environ.get('DATABASE_URL')}")
        if asked:
            self.stdout.write(
                f"  first twins are training for: {', '.join(asked)} (see the Twins pages); "
                "the demo promotes each line's first promotable one"
            )
        self.stdout.write(f"  logs of each process: {processes.log_dir()}")
        self.stdout.write("Press Ctrl-C to stop; run `twinops demo` again to resume.\n")
