"""The Celery application: Redis broker, late acknowledgement, its queues, routes and beat schedule (settings: CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinops.config.settings")

app = Celery("twinops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
