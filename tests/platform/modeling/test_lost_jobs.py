"""A training job whose message was lost is sent again, once per wait, and trains once; a dying worker is capped."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from twinops.modeling import services, tasks
from twinops.modeling.models import TrainingJob, TwinVersion


def _lost(line, tiny, *, age_s: float) -> TrainingJob:
    """Queue a job whose message never reaches a worker (the broker lost it): created, never sent."""
    job = services.training_job_create(line=line, actor="system:test", config_overrides=tiny, enqueue=False)
    at = timezone.now() - timedelta(seconds=age_s)
    TrainingJob.objects.filter(pk=job.pk).update(requested_at=at, sent_at=at)
    return job


def test_a_queued_job_whose_message_was_lost_is_sent_again_and_trains_once(
    line, ingest, tanks, tiny, settings, sent
) -> None:
    settings.TWINOPS_RESEND_QUEUED_AFTER_S = 600
    ingest(line, tanks(1200))
    job = _lost(line, tiny, age_s=601)
    assert tasks.requeue_stale_jobs() == [job.pk]  # what beat runs every minute
    assert tasks.requeue_stale_jobs() == []  # the next minute: just sent, so not again
    assert sent == [job.pk]
    assert tasks.train_twin(job.pk) == "done"
    assert tasks.train_twin(job.pk) == "not claimed"  # the lost message, turning up after all, does nothing
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 1)
    assert TwinVersion.objects.filter(line=line).count() == 1
    again = services.training_job_create(line=line, actor="system:test", enqueue=False)  # the line is free again
    assert again.status == "queued"


def test_a_recently_queued_job_is_left_to_its_own_message(line, tiny, settings, sent) -> None:
    settings.TWINOPS_RESEND_QUEUED_AFTER_S = 600
    job = _lost(line, tiny, age_s=30)
    assert services.training_jobs_requeue_stale() == [] and sent == []
    TrainingJob.objects.filter(pk=job.pk).update(sent_at=timezone.now() - timedelta(seconds=601))  # time passes
    assert services.training_jobs_requeue_stale() == [job.pk] and sent == [job.pk]


def test_a_job_whose_worker_dies_every_time_says_so_on_the_twin_page(line, settings, client, make_user) -> None:
    settings.TWINOPS_TRAIN_STALE_AFTER_S = 0.01
    settings.TWINOPS_TRAIN_MAX_ATTEMPTS = 2
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    for _ in range(2):  # claimed, then the worker dies without finishing: no heartbeat, no result
        assert services.training_job_claim(job_id=job.pk) is not None
        TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=job.requested_at - timedelta(days=1))
    assert services.training_job_claim(job_id=job.pk) is None  # the re-delivered message gives up
    job.refresh_from_db()
    expected = "the worker died 2 times while running it (out of memory or a crash in a native solver?)"
    assert (job.status, job.message) == ("failed", expected)
    make_user("data", username="dana")
    client.login(username="dana", password="correct-horse-battery")
    assert expected in client.get(f"/twins/{line.key}/").content.decode()
