"""Training a line's twin from its telemetry: one version per job, refusals that say what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from twinops.audit.models import AuditEvent
from twinops.modeling import selectors, services, tasks
from twinops.modeling.models import TrainingJob, TwinVersion


def _train(line, tiny) -> TrainingJob:
    job = services.training_job_create(line=line, actor="system:test", config_overrides=tiny, enqueue=False)
    tasks.train_twin(job.pk)
    job.refresh_from_db()
    return job


def test_training_registers_one_version_with_its_report_and_checkpoint(line, ingest, tanks, tiny) -> None:
    data = ingest(line, tanks(1200))
    seen: list[tuple[int, str]] = []
    job = services.training_job_create(line=line, actor="system:test", config_overrides=tiny, enqueue=False)
    services.training_job_run(job_id=job.pk, on_progress=lambda j: seen.append((j.epoch, j.phase)))
    job.refresh_from_db()
    assert (job.status, job.attempts, job.epoch, job.total_epochs) == ("done", 1, 2, 2)
    assert {"loss", "cv", "val_cv"} <= set(job.last_losses)
    # Each epoch, then each step after them: minutes on a real line, so the page says which one runs.
    assert seen[:7] == [
        (0, "training"),
        (1, "training"),
        (2, "training"),
        (2, "calibrating the intervals"),
        (2, "choosing the state estimate"),
        (2, "fitting fault thresholds"),
        (2, "evaluating against the baselines"),
    ]
    assert seen[-1] == (2, "registering")
    band = [phase for _, phase in seen[7:-1]]  # the adaptive band's forecast starts, counted up to all of them
    assert band and all(phase.startswith("scoring the band ") for phase in band)
    done, total = band[-1].removeprefix("scoring the band ").split("/")
    assert done == total and int(total) > 0
    version = TwinVersion.objects.get(line=line)
    assert (version.version, version.job, version.status) == (1, job, "candidate")
    assert set(version.report["twin"]["nrmse"]) == {"h1", "h5", "h20", "free_run"}
    assert version.promotable == version.report["promotable"]
    assert (version.data_start, version.data_end, version.data_rows) == (data["times"][0], data["times"][-1], 1200)
    assert (version.cv_names, version.mv_names, version.dv_names) == (
        ["lower_level_m", "upper_level_m"],
        ["pump_flow_m3_h"],
        ["leak_m3_h"],
    )  # telemetry's order: role, then name
    assert selectors.twin_load(version=version).config.epochs == 2
    assert AuditEvent.objects.filter(action="twin.trained", object_id=str(version.pk)).count() == 1


def test_too_little_data_refuses_the_job_with_what_is_missing_and_registers_nothing(line, ingest, tanks, tiny) -> None:
    ingest(line, tanks(60))
    job = _train(line, tiny)
    assert job.status == "refused"
    assert job.message.startswith("too little data: need at least")
    assert not TwinVersion.objects.exists()


def test_an_mv_that_never_moves_refuses_the_job_naming_the_mv(line, ingest, tanks, tiny) -> None:
    data = tanks(1200)
    data["values"][:, 2] = 1.0  # the pump never changes: its effect cannot be learned
    ingest(line, data)
    job = _train(line, tiny)
    assert job.status == "refused"
    assert "no MV excitation" in job.message and "pump_flow_m3_h (constant at 1)" in job.message
    assert "Engineers can run step tests that move these MVs" in job.message  # who can act on it
    assert not TwinVersion.objects.exists()


def test_a_nan_heavy_window_is_refused_naming_the_worst_tags(line, ingest, tanks, tiny) -> None:
    data = tanks(1200)
    rng = np.random.default_rng(3)
    data["values"][rng.random(1200) < 0.75, 0] = np.nan  # 3 in 4 upper-level readings are NaN
    ingest(line, data)
    job = _train(line, tiny)
    assert job.status == "refused"
    assert "too many bad samples" in job.message and "upper_level_m" in job.message
    assert job.message.endswith(
        "The data team can import a longer or cleaner history (or choose another window) and train again."
    )
    assert not TwinVersion.objects.exists()


def test_scattered_nans_are_masked_and_the_twin_still_trains(line, ingest, tanks, tiny) -> None:
    data = tanks(1200)
    data["values"][::50, 1] = np.nan  # 2 % bad samples
    ingest(line, data)
    job = _train(line, tiny)
    assert job.status == "done" and job.version.data_rows == 1200


def test_running_the_task_twice_for_one_job_registers_one_version(line, ingest, tanks, tiny) -> None:
    ingest(line, tanks(1200))
    job = _train(line, tiny)
    assert tasks.train_twin(job.pk) == "not claimed"  # a redelivered message finds the job done
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 1)
    assert TwinVersion.objects.filter(line=line).count() == 1


def test_a_job_being_trained_cannot_be_claimed_by_a_second_worker(line) -> None:
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    assert services.training_job_claim(job_id=job.pk) is not None
    assert services.training_job_claim(job_id=job.pk) is None  # fresh heartbeat: the first worker is alive
    assert services.training_jobs_requeue_stale() == []


def test_a_silent_job_is_reclaimed_once_and_the_old_attempts_writes_are_refused(line, settings) -> None:
    settings.TWINOPS_TRAIN_STALE_AFTER_S = 0.01
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    first = services.training_job_claim(job_id=job.pk)
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=first.heartbeat_at.replace(year=2020))
    second = services.training_job_claim(job_id=job.pk)
    assert second is not None and second.attempts == 2 and second.claim != first.claim
    with pytest.raises(services.ClaimLostError):
        services.training_job_progress(job=first, epoch=1, total=2, losses={"loss": 1.0})


def test_a_job_whose_worker_dies_every_time_fails_instead_of_running_forever(line, settings) -> None:
    settings.TWINOPS_TRAIN_STALE_AFTER_S = 0.01
    settings.TWINOPS_TRAIN_MAX_ATTEMPTS = 2
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    for _ in range(2):
        services.training_job_claim(job_id=job.pk)
        TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=job.requested_at.replace(year=2020))
    assert services.training_jobs_requeue_stale() == []
    job.refresh_from_db()
    assert job.status == "failed" and "died 2 times" in job.message


def test_a_diverged_loss_is_recorded_as_missing_rather_than_failing_the_job(line) -> None:
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    services.training_job_progress(job=job, epoch=1, total=3, losses={"loss": float("nan"), "cv": 0.5})
    job.refresh_from_db()
    assert job.last_losses == {"loss": None, "cv": 0.5} and job.status == "running"
