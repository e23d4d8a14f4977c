"""The twin page: versions, the evaluation table, charts and live training progress."""

from __future__ import annotations

import dataclasses
import json
import re
from html import escape

from django.test import Client

from twinops.modeling import services
from twinops.modeling.models import TrainingJob
from twinops.modeling.selectors import twin_promoted


def _login(client: Client, make_user, role: str = "data") -> None:
    user = make_user(role)
    client.force_login(user)


def test_the_twin_page_shows_the_evaluation_table_and_charts_of_a_trained_version(
    client, make_user, line, register
) -> None:
    register(line, promotable=True)
    _login(client, make_user)
    html = client.get("/twins/tanks/").content.decode()
    assert "Evaluation of v1" in html
    table = html[html.index('<table class="evaluation">') : html.index("</table>", html.index('class="evaluation"'))]
    for cv in ("upper_level_m", "lower_level_m", "mean over CVs"):
        assert cv in table
    for model in ("twin", "persistence", "linear ARX"):
        assert table.count(f"<td>{model}</td>") == 3  # two CVs and the mean
    assert all(h in table for h in ("1 step", "5 steps", "20 steps", "free run"))
    assert 'class="coverage"' in html and "Trained in" in html
    figures = re.findall(
        r'<script type="application/json" class="plotly-figure" data-target="([^"]+)">(.*?)</script>', html, re.S
    )
    assert [target for target, _ in figures] == ["twin-chart-h1", "twin-chart-h5", "twin-chart-h20"]
    traces = json.loads(figures[2][1])["data"]
    assert {t.get("name") for t in traces} >= {"actual", "twin", "twin interval", "linear ARX"}
    assert f'id="{figures[0][0]}"' in html
    assert 'action="/twins/tanks/v1/promote/"' in html  # a data user may promote
    # How the state is estimated, and the validation errors it was chosen on (this tiny twin keeps the offset-free fit).
    estimate = html[html.index('class="state-estimate"') :]
    estimate = estimate[: estimate.index("</p>")]
    choice = line.twin_versions.get(version=1).report["state_estimate"]
    assert choice["chosen"] == "moving_horizon" and "<strong>Moving horizon</strong>" in estimate
    assert choice["settings"]["offset_scale"] and "a constant offset per CV fitted beside it" in estimate
    for kind in ("moving_horizon", "encoder"):
        errors = " / ".join(f"{choice['rms_error'][kind][h]:.3f}" for h in ("h1", "h5", "h20"))
        assert errors in estimate


def test_a_viewer_without_the_train_capability_sees_no_promote_button(client, make_user, line, register) -> None:
    register(line, promotable=True)
    _login(client, make_user, "engineer")
    html = client.get("/twins/tanks/").content.decode()
    assert "Evaluation of v1" in html and "/promote/" not in html
    assert client.post("/twins/tanks/v1/promote/", {"reason": "x"}).status_code == 403


def test_promoting_from_the_page_with_a_reason_makes_it_the_optimizers_twin(client, make_user, line, register) -> None:
    register(line, promotable=True)
    _login(client, make_user)
    response = client.post("/twins/tanks/v1/promote/", {"reason": "better than v0"}, follow=True)
    assert "Twin v1 is now promoted" in response.content.decode()
    assert twin_promoted(line=line).version == 1


def test_training_progress_is_polled_while_a_job_runs(client, make_user, line) -> None:
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    services.training_job_progress(job=job, epoch=3, total=10, losses={"loss": 0.25, "cv": 0.125})
    _login(client, make_user)
    html = client.get("/twins/tanks/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in html
    assert '<progress max="100" value="30"' in html and "epoch 3 / 10" in html and "loss 0.2500" in html


def test_after_the_epochs_the_page_says_which_step_runs_instead_of_a_full_bar(client, make_user, line) -> None:
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    services.training_job_progress(job=job, epoch=10, total=10, losses={"loss": 0.25})
    TrainingJob.objects.filter(pk=job.pk).update(phase="choosing the state estimate")
    _login(client, make_user)
    html = client.get("/twins/tanks/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert '<progress aria-label="choosing the state estimate"></progress>' in html  # indeterminate: not "100 %"
    assert 'value="100"' not in html
    assert "epoch 10 / 10" in html and "· choosing the state estimate…" in html


def test_the_evaluation_counts_the_adaptive_band_forecasts_with_a_bar_that_fills(client, make_user, line) -> None:
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    services.training_job_progress(job=job, epoch=10, total=10, losses={"loss": 0.25})
    TrainingJob.objects.filter(pk=job.pk).update(phase="scoring the band 1536/5440")
    _login(client, make_user)
    html = client.get("/twins/tanks/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert '<progress max="100" value="28" aria-label="scoring the band 1536/5440">' in html
    assert "· scoring the band 1536/5440…" in html


def test_the_train_button_queues_one_job_after_commit_and_refuses_a_second(
    client, make_user, line, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from twinops.modeling import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.train_twin, "delay", sent.append)
    _login(client, make_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/twins/tanks/train/", {"start": "", "end": ""}, follow=True)
    assert "Training job" in response.content.decode() and sent == []  # not sent before the commit
    for callback in callbacks:
        callback()
    assert sent == [TrainingJob.objects.get(line=line).pk]  # sent once, once committed
    response = client.post("/twins/tanks/train/", {"start": "", "end": ""}, follow=True)
    assert "is already queued" in response.content.decode()
    assert TrainingJob.objects.filter(line=line).count() == 1


def test_the_progress_poll_reloads_the_page_once_training_has_finished(client, make_user, line, register) -> None:
    register(line)
    _login(client, make_user)
    response = client.get("/twins/tanks/jobs/", HTTP_HX_REQUEST="true")
    assert response["HX-Refresh"] == "true" and "every 2s" not in response.content.decode()


def test_the_twin_page_lists_which_promotion_checks_failed_and_what_would_help(
    client, make_user, line, trained
) -> None:
    from twins.promotion import Check

    record, outcome = trained
    checks = [
        Check("free_run", True, "twin free-run NRMSE 0.1000 beats the linear baseline's 0.2000"),
        Check(
            "gain_signs",
            False,
            "1 of 2 gain signs the data shows disagree: lower_level_m/pump_flow_m3_h data +, twin -",
        ),
        Check("coverage", True, "adaptive band coverage of every CV within 0.80-1.00 at 1, 5 and 20 steps"),
    ]
    help_text = "The record's steps of pump_flow_m3_h move lower_level_m up and the twin moves it the other way"
    report = dataclasses.replace(outcome.report, promotable=False, checks=checks, advice=[help_text], reason="failed")
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    services.twin_version_register(job=job, record=record, outcome=dataclasses.replace(outcome, report=report))
    _login(client, make_user)
    html = client.get("/twins/tanks/").content.decode()
    listed = html[html.index('<ul class="promotion-checks">') : html.index("</ul>", html.index("promotion-checks"))]
    assert listed.count('<span class="badge ok">passed</span>') == 2
    assert listed.count('<span class="badge bad">failed</span>') == 1
    failed = listed[listed.index("failed</span>") :]
    assert failed.split("</li>")[0].count("gain signs agree with the data") == 1 and "twin -" in failed
    assert "What would help" in html and escape(help_text) in html
    assert 'action="/twins/tanks/v1/promote/"' not in html  # not promotable: no promote button


def test_the_coverage_table_shows_the_adaptive_band_beside_the_calibrated_one(
    client, make_user, line, register, trained
) -> None:
    from django.template.defaultfilters import floatformat

    version = register(line, promotable=True)
    _login(client, make_user)
    html = client.get("/twins/tanks/").content.decode()
    table = html[html.index('<table class="coverage">') : html.index("</table>", html.index('class="coverage"'))]
    report = version.report
    for key in ("h1", "h5", "h20"):
        plain, adaptive = report["coverage"][key]["lower_level_m"], report["adaptive_coverage"][key]["lower_level_m"]
        assert f"{floatformat(plain, 3)} / <strong>{floatformat(adaptive, 3)}</strong>" in table
    assert "the promotion check judges the adaptive one" in html
    record, outcome = trained  # a report from before the adaptive band: the calibrated figure alone
    older = dataclasses.replace(outcome.report, adaptive_coverage=None)
    job = services.training_job_create(line=line, actor="system:test", enqueue=False)
    job = services.training_job_claim(job_id=job.pk)
    services.twin_version_register(job=job, record=record, outcome=dataclasses.replace(outcome, report=older))
    html = client.get("/twins/tanks/?v=2").content.decode()
    table = html[html.index('<table class="coverage">') : html.index("</table>", html.index('class="coverage"'))]
    assert "<strong>" not in table and floatformat(report["coverage"]["h1"]["lower_level_m"], 3) in table


def test_a_queued_job_says_which_other_lines_training_it_waits_behind(client, make_user, line) -> None:
    from twinops.lines.models import Line

    other = Line.objects.create(key="boiler", name="Boiler", sample_period_s=10.0, created_at=line.created_at)
    first = services.training_job_create(line=other, actor="system:test", enqueue=False)
    first = services.training_job_claim(job_id=first.pk)
    services.training_job_progress(job=first, epoch=8, total=30, losses={"loss": 0.5})
    mine = services.training_job_create(line=line, actor="system:test", enqueue=False)
    _login(client, make_user)
    html = client.get("/twins/tanks/").content.decode()
    row = html[html.index(f"<td>#{mine.pk}</td>") :]
    row = row[: row.index("</tr>")]
    assert "waiting for a worker on the train queue" in row
    assert f'<a href="/twins/boiler/">#{first.pk} Boiler</a> (running, epoch 8 / 30)' in row
    TrainingJob.objects.filter(pk=first.pk).update(status=TrainingJob.Status.FAILED)  # the worker is free again
    html = client.get("/twins/tanks/").content.decode()
    row = html[html.index(f"<td>#{mine.pk}</td>") :]
    assert "Boiler" not in row[: row.index("</tr>")]  # nothing left ahead of it


def test_the_jobs_list_says_when_the_line_is_retrained_on_its_own(client, make_user, line, settings) -> None:
    _login(client, make_user)
    settings.TWINOPS_RETRAIN_EVERY_H = 12
    html = client.get("/twins/tanks/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert "retrained every 12 h when that much new data has arrived" in html
    settings.TWINOPS_RETRAIN_EVERY_H = 0
    html = client.get("/twins/tanks/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert "Scheduled retraining is off" in html and "retrained every" not in html


def test_a_newer_version_than_the_promoted_one_is_announced_with_its_verdict(client, make_user, line, register) -> None:
    first = register(line, promotable=True)
    services.twin_promote(version=first, actor="system:test", reason="beats linear")
    _login(client, make_user, "engineer")
    assert "newer than the promoted" not in client.get("/twins/tanks/").content.decode()
    register(line, promotable=True)
    html = client.get("/twins/tanks/").content.decode()
    assert "is newer than the promoted v1" in html and "passes every promotion check" in html
    assert "until a data-team or admin user promotes it" in html  # an engineer cannot: who can is named
    register(line, promotable=False)
    html = client.get("/twins/tanks/").content.decode()
    assert "v3</a>, trained by" in html and "does not pass the promotion checks" in html


def test_a_newer_version_that_forecasts_the_newest_data_worse_than_the_promoted_one_is_announced_with_the_warning(
    client, make_user, line, register, trained
) -> None:
    from twins.promotion import Check, check_versus_promoted, verdict

    first = register(line, promotable=True)
    services.twin_promote(version=first, actor="system:test", reason="beats linear")
    record, outcome = trained
    mine = outcome.report.twin.mean["free_run"]
    checks = [
        Check("free_run", True, f"twin free-run NRMSE {mine:.4f} beats the linear baseline's 0.9000"),
        Check("coverage", True, "adaptive band coverage of every CV within 0.80-1.00 at 1, 5 and 20 steps"),
        check_versus_promoted(mine, mine / 2, "promoted v1"),
    ]
    promotable, reason = verdict(checks)
    report = dataclasses.replace(outcome.report, checks=checks, promotable=promotable, reason=reason)
    job = services.training_job_claim(
        job_id=services.training_job_create(line=line, actor="system:test", enqueue=False).pk
    )
    services.twin_version_register(job=job, record=record, outcome=dataclasses.replace(outcome, report=report))
    _login(client, make_user)
    html = client.get("/twins/tanks/").content.decode()
    banner = html[html.index("newer-version") : html.index("</p>", html.index("newer-version"))]
    assert "It passes every promotion check, with a warning: on this version&#x27;s test segment" in banner
    assert f"is worse than promoted v1&#x27;s {mine / 2:.4f}" in banner and "you promote v2 below" in banner
    html = client.get("/twins/tanks/?v=2").content.decode()  # its evaluation lists the check as a warning
    listed = html[html.index('<ul class="promotion-checks">') : html.index("</ul>", html.index("promotion-checks"))]
    warned = listed[listed.index('<span class="badge stale">warning</span>') :].split("</li>")[0]
    assert "free run no worse than the promoted twin" in warned
