"""Scheduled retrains: a line in production gets a new twin version once a period's worth of new data has arrived,
trained on the promoted version's recipe, and the version waits for the data team's promotion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from twinops.audit.models import AuditEvent
from twinops.modeling import selectors, services
from twinops.modeling.models import TwinVersion
from twinops.modeling.pages import evaluation_rows

ROWS_TRAINED = 1200  # the shared twin's record (conftest `trained`): 3.3 h at 10 s
HOUR_ROWS = 360


@pytest.fixture
def in_production(line, register, ingest, tanks, settings):
    """The tanks line with v1 promoted and `new_h` hours of data beyond v1's window; retrain every hour."""
    settings.TWINOPS_RETRAIN_EVERY_H = 1

    def make(new_h: float, promote: bool = True) -> TwinVersion:
        version = register(line, promotable=True)
        if promote:
            services.twin_promote(version=version, actor="system:test", reason="beats linear")
        ingest(line, tanks(ROWS_TRAINED + int(new_h * HOUR_ROWS)))
        return version

    return make


def test_a_line_with_a_period_of_new_data_is_retrained_and_the_new_version_waits_for_promotion(
    line, in_production, sent, tiny, django_capture_on_commit_callbacks
) -> None:
    v1 = in_production(new_h=2)
    with django_capture_on_commit_callbacks(execute=True):
        jobs = services.training_jobs_schedule(now=timezone.now() + timedelta(hours=2))
    assert [j.pk for j in jobs] == sent and len(jobs) == 1  # queued, and sent once its transaction committed
    job = jobs[0]
    assert job.requested_by_label == "system:retrain" and job.config_overrides == tiny  # v1's recipe
    event = AuditEvent.objects.get(action="twin.training_requested", object_id=str(job.pk))
    assert "scheduled retrain: 2 h of new data since v1" in event.reason

    services.training_job_run(job_id=job.pk)
    v2 = selectors.twin_latest(line=line)
    assert v2.version == 2 and v2.status == TwinVersion.Status.CANDIDATE
    assert v2.data_end - v1.data_end >= timedelta(hours=1.9)  # it learned from the new data
    assert selectors.twin_promoted(line=line).pk == v1.pk  # the optimizer keeps v1 until someone promotes v2
    # v2 was scored beside v1 on v2's test segment (new data v1 never trained on): the page's table has v1's row,
    # and the verdict says which forecasts that data better, as a warning the data team weighs, never a block.
    check = next(c for c in v2.report["checks"] if c["name"] == "versus_promoted")
    assert "promoted v1" in v2.report["baselines"] and not check["blocking"]
    mine, v1s = v2.report["twin"]["mean"]["free_run"], v2.report["baselines"]["promoted v1"]["mean"]["free_run"]
    assert check["passed"] == (mine <= v1s) and f"promoted v1's {v1s:.4f}" in check["detail"]
    assert "promoted v1" in {row.model for row in evaluation_rows(v2.report)}
    # v2's window now ends at the newest sample: no new data, nothing more to retrain on
    assert services.training_jobs_schedule(now=timezone.now() + timedelta(hours=4)) == []


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("checkpoint damaged in storage", "is not a TwinOps twin checkpoint: the magic header line is missing"),
        ("trained on a window that starts later", "so it would be scored on data it was trained on"),
    ],
)
def test_a_promoted_twin_that_cannot_be_compared_fairly_is_named_in_the_new_versions_verdict_which_it_never_blocks(
    line, in_production, sent, tiny, fault, said
) -> None:
    v1 = in_production(new_h=2)
    if fault.startswith("checkpoint"):
        TwinVersion.objects.filter(pk=v1.pk).update(checkpoint=b"not a checkpoint")
    else:  # its training block then reaches into the new version's test segment (the newest 15 % of the window)
        TwinVersion.objects.filter(pk=v1.pk).update(data_start=v1.data_start + timedelta(hours=2.5))
    (job,) = services.training_jobs_schedule(now=timezone.now() + timedelta(hours=2))
    services.training_job_run(job_id=job.pk)
    v2 = selectors.twin_latest(line=line)
    assert v2.version == 2 and "promoted v1" not in v2.report["baselines"]
    check = next(c for c in v2.report["checks"] if c["name"] == "versus_promoted")
    assert not check["passed"] and check["detail"].startswith("not compared with promoted v1: ")
    assert check["detail"].endswith(said)
    assert "warning: versus_promoted (not compared with promoted v1" in v2.report["reason"]  # a warning, no block


@pytest.mark.parametrize(
    ("case", "new_h", "later_h"),
    [
        ("no promoted twin: the line is not in production yet", 2, 2),
        ("less than a period of new data", 0.5, 2),
        ("a job was requested within the period", 2, 0.5),
    ],
)
def test_a_line_that_is_not_due_gets_no_job(line, in_production, sent, case, new_h, later_h) -> None:
    in_production(new_h=new_h, promote=not case.startswith("no promoted"))
    assert services.training_jobs_schedule(now=timezone.now() + timedelta(hours=later_h)) == []
    assert sent == [] and line.training_jobs.count() == 1  # only the registered version's job


def test_a_line_with_a_job_still_running_gets_no_second_one(line, in_production, sent, tiny) -> None:
    in_production(new_h=2)
    services.training_job_create(line=line, actor="data", config_overrides=tiny, enqueue=False)
    later = timezone.now() + timedelta(hours=2)
    line.training_jobs.update(requested_at=timezone.now() - timedelta(hours=3))  # old, but still queued
    assert services.training_jobs_schedule(now=later) == []


def test_zero_turns_scheduled_retraining_off_and_a_malformed_period_names_the_variable(
    line, in_production, sent, settings
) -> None:
    in_production(new_h=2)
    settings.TWINOPS_RETRAIN_EVERY_H = 0
    assert services.training_jobs_schedule(now=timezone.now() + timedelta(hours=2)) == []
    settings.TWINOPS_RETRAIN_EVERY_H = "daily"
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_RETRAIN_EVERY_H must be an integer"):
        services.training_jobs_schedule()
