"""Training goes to the train queue (GPU nodes serve it) and beat looks for dead workers' jobs every minute."""

from __future__ import annotations

from twinops.config.celery import app


def test_training_is_routed_to_the_train_queue_and_the_requeue_to_default() -> None:
    assert app.amqp.router.route({}, "modeling.train_twin")["queue"].name == "train"
    assert app.amqp.router.route({}, "modeling.requeue_stale_jobs")["queue"].name == "default"


def test_beat_requeues_stale_training_jobs_every_minute() -> None:
    entry = app.conf.beat_schedule["modeling.requeue_stale_jobs"]
    assert entry["task"] == "modeling.requeue_stale_jobs" and entry["schedule"] == 60.0
