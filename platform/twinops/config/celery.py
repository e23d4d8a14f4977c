"""The Celery application: Redis broker, explicit queues, late acknowledgement (settings: CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinops.config.settings")

app = Celery("twinops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name, routing_key=name) for name in ("ingest", "train", "optimize", "default")]
app.autodiscover_tasks()
