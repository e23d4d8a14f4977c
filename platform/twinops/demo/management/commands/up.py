"""`twinops up`: migrate, seed the demo accounts, run web + Celery worker + beat + each PLC's collector and release
agent (the lines whose spec names a `plc.endpoint`) until Ctrl-C.

It lives in the demo app beside `twinops demo` because it seeds the demo accounts (outside production). In
production (TWINOPS_ENV=production) it creates no demo account, collects the static files and serves with gunicorn.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from twinops import processes
from twinops.config.embedded import data_home
from twinops.demo.services import demo_users_seed
from twinops.releases.plc_link import PlcConfigError, plc_children_all


class Command(BaseCommand):
    help = (
        "Start the platform on this machine: database, migrations, web server, Celery worker and beat, and a collector "
        "and a release agent for each line whose spec names its PLC's endpoint."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="do not start a Celery worker here")
        parser.add_argument("--no-beat", action="store_true", help="do not start the Celery beat scheduler")
        parser.add_argument(
            "--no-plc",
            action="store_true",
            help="start no collector or release agent here (another machine serves the PLCs: one of each per line)",
        )
        parser.add_argument(
            "--concurrency", type=int, default=2, help="pool processes of the ingest/optimize worker (training: 1)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        processes.stop_on_signals()  # a service manager's SIGTERM or a closing terminal's SIGHUP: like Ctrl-C
        warning = processes.exposure_warning(opts["host"])
        if warning:
            self.stderr.write(self.style.ERROR(warning))
        self.stdout.write("Applying migrations…")
        call_command("migrate", interactive=False, verbosity=0)
        if settings.PRODUCTION:  # gunicorn serves static files from STATIC_ROOT (WhiteNoise), not from the sources
            call_command("collectstatic", interactive=False, verbosity=0)
        logins = [] if settings.PRODUCTION else demo_users_seed()  # never the published passwords in production
        plc_children, without_plc = [], []
        if not opts["no_plc"]:
            try:  # every password and certificate is found before anything starts
                plc_children, without_plc = plc_children_all()
            except PlcConfigError as e:
                raise CommandError(f"{e}\n(or start with --no-plc to serve no PLC from this machine)") from None
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "twinops.config.settings"}
        procs: processes.Procs = []
        try:
            url = processes.web_worker_beat(
                host=opts["host"],
                port=opts["port"],
                worker=not opts["no_worker"],
                beat=not opts["no_beat"],
                concurrency=opts["concurrency"],
                env=env,
                procs=procs,
                beat_schedule=str(data_home() / "celerybeat-schedule"),
            )
            for child in plc_children:  # after the web server: its logs and health come first if it fails
                processes.start(child.name, child.cmd, {**env, **child.env}, procs)
            self.stdout.write(self.style.SUCCESS(f"\nTwinOps is running at {url}"))
            for child in plc_children:
                self.stdout.write(f"  {child.name}: started")
            for key, why in without_plc:
                self.stdout.write(f"  {key}: {why}")
            for role, username, password in logins:
                self.stdout.write(f"  {role:<9} login: {username} / {password}")
            self.stdout.write(f"  logs of each process: {processes.log_dir()}")
            self.stdout.write("Press Ctrl-C to stop.\n")
            processes.supervise(procs, say=lambda line: self.stderr.write(f"  {line}"))
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        except processes.ProcessDied as exc:
            raise CommandError(str(exc)) from None
        finally:
            processes.stop_all(procs)
        self.stdout.write("Stopped.")
