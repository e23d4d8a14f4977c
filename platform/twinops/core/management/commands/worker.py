"""`twinops worker`: a Celery worker for this platform (add more on more machines; GPU nodes take `-Q train`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand

from twinops.processes import all_queues, celery_cmd


class Command(BaseCommand):
    help = "Run a Celery worker. On other machines set DATABASE_URL and REDIS_URL to the shared servers."

    def add_arguments(self, parser: Any) -> None:
        queues = all_queues()
        parser.add_argument("-Q", "--queues", default=queues, help=f"comma-separated queues (default {queues})")
        parser.add_argument("-c", "--concurrency", type=int, default=None)

    def handle(self, *args: Any, **opts: Any) -> None:
        cmd = celery_cmd("worker", "-Q", opts["queues"], "--loglevel", "INFO")
        if opts["concurrency"]:
            cmd += ["-c", str(opts["concurrency"])]
        sys.stdout.flush()
        os.execve(sys.executable, cmd, {**os.environ, "DJANGO_SETTINGS_MODULE": "twinops.config.settings"})
