"""Import jobs never loop on a worker that keeps dying, and a job whose message was lost is sent again."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from twinops.core import locks
from twinops.telemetry import services, store, tasks
from twinops.telemetry.models import HistoryImportJob

pytestmark = pytest.mark.django_db(transaction=True)  # the worker claims the job on its own connection

CSV = "timestamp,T,F\n2024-03-01T00:00:00Z,1,2\n2024-03-01T00:00:01Z,3,4\n"


class WorkerKilled(BaseException):
    """Stands for SIGKILL or a segfault: no `except Exception` in the worker sees it, nothing is cleaned up."""


def _queued(line, tmp_path, *, age_s: float = 0.0) -> HistoryImportJob:
    """Create a queued job as a web upload does, without sending its task (the broker lost the message)."""
    path = tmp_path / "upload.csv"
    path.write_text(CSV)
    at = timezone.now() - timedelta(seconds=age_s)
    return HistoryImportJob.objects.create(line=line, path=str(path), filename="plant.csv", created_at=at, sent_at=at)


def test_a_job_whose_worker_dies_every_time_fails_with_the_reason_instead_of_looping(
    line, tmp_path, settings, monkeypatch, sample_count, client, make_user
) -> None:
    settings.TWINOPS_IMPORT_MAX_ATTEMPTS = 2
    job = _queued(line, tmp_path)

    def die(**kwargs) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(services, "history_import", die)
        for _ in range(2):  # the task is re-delivered after each death (acks_late + reject_on_worker_lost)
            with pytest.raises(WorkerKilled):
                tasks.history_import_task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("running", 2)
    assert tasks.history_import_task(job.pk) == "failed"  # the third delivery gives up rather than run it again
    job.refresh_from_db()
    expected = "the worker died 2 times while running it (out of memory or a crash in a native solver?)"
    assert (job.status, job.attempts, job.error) == ("failed", 2, expected)
    assert job.finished_at is not None and sample_count() == 0
    assert tasks.history_import_task(job.pk) == "skipped"  # and a later duplicate does nothing
    make_user("data", username="dana")
    client.login(username="dana", password="correct-horse-battery")
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert "The import failed" in page and expected in page


def test_one_death_is_retried_and_the_import_completes(line, tmp_path, monkeypatch, sample_count) -> None:
    job = _queued(line, tmp_path)
    real = services.history_import
    deaths = iter([WorkerKilled])

    def die_once(**kwargs):
        for exc in deaths:
            raise exc
        return real(**kwargs)

    monkeypatch.setattr(services, "history_import", die_once)
    with pytest.raises(WorkerKilled):
        tasks.history_import_task(job.pk)
    assert tasks.history_import_task(job.pk) == "done"
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2) and sample_count() == 4


def test_a_job_whose_message_was_lost_is_sent_again_once_and_runs_once(
    line, tmp_path, settings, sent_jobs, sample_count
) -> None:
    settings.TWINOPS_RESEND_QUEUED_AFTER_S = 600
    lost = _queued(line, tmp_path, age_s=601)
    waiting = _queued(line, tmp_path, age_s=30)  # queued recently: its message is still on its way
    assert tasks.resend_queued_imports() == [lost.pk]  # what beat runs every minute
    assert sent_jobs == [lost.pk]
    assert tasks.resend_queued_imports() == []  # the next minute: just sent, not again
    assert sent_jobs == [lost.pk]
    assert tasks.history_import_task(lost.pk) == "done"
    assert tasks.history_import_task(lost.pk) == "skipped"  # the original message, arriving late after all
    lost.refresh_from_db()
    assert (lost.status, lost.attempts) == ("done", 1) and sample_count() == 4
    waiting.refresh_from_db()
    assert waiting.status == "queued"


def test_a_job_sent_again_is_sent_again_later_while_it_stays_queued(line, tmp_path, settings, sent_jobs) -> None:
    settings.TWINOPS_RESEND_QUEUED_AFTER_S = 600
    job = _queued(line, tmp_path, age_s=601)
    assert services.history_import_jobs_resend() == [job.pk]
    later = timezone.now() + timedelta(seconds=601)
    assert services.history_import_jobs_resend(now=later) == [job.pk]
    assert sent_jobs == [job.pk, job.pk]


def test_a_running_job_whose_worker_was_killed_whole_is_sent_again_and_completes(
    line, tmp_path, monkeypatch, sent_jobs, sample_count
) -> None:
    # kill -9 of the worker with its pool: the message stays unacknowledged in Redis for hours, the job 'running'
    job = _queued(line, tmp_path)
    deaths = iter([WorkerKilled])
    real = services.history_import

    def die_once(**kwargs):
        for exc in deaths:
            raise exc
        return real(**kwargs)

    monkeypatch.setattr(services, "history_import", die_once)
    with pytest.raises(WorkerKilled):
        tasks.history_import_task(job.pk)
    job.refresh_from_db()
    assert job.status == "running"
    assert tasks.resend_queued_imports() == [job.pk]  # no worker holds it: sent again at once, not in hours
    assert sent_jobs == [job.pk]
    assert tasks.history_import_task(job.pk) == "done"
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2) and sample_count() == 4


def test_a_running_job_whose_worker_is_alive_is_not_sent_again(line, tmp_path, sent_jobs) -> None:
    job = _queued(line, tmp_path)
    HistoryImportJob.objects.filter(pk=job.pk).update(status="running", attempts=1)
    with psycopg.connect(**store._side_params(), autocommit=True) as worker:  # a live worker holds the job's lock
        worker.execute("SELECT pg_advisory_lock(%s, %s)", [locks.TELEMETRY_IMPORT_JOB, job.pk])
        assert tasks.resend_queued_imports() == []
    assert sent_jobs == []
