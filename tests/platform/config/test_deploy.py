"""Production settings pass Django's deployment checks and refuse unsafe configuration."""

import os
import secrets
import subprocess
import sys

import pytest


def _twinops(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"TWINOPS_SECRET_KEY", "TWINOPS_ALLOWED_HOSTS"}}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "twinops", *args], env=full_env, capture_output=True, text=True, timeout=120
    )


def test_the_deployment_check_is_clean_with_production_settings() -> None:
    result = _twinops(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        TWINOPS_ENV="production",
        TWINOPS_SECRET_KEY=secrets.token_urlsafe(64),
        TWINOPS_ALLOWED_HOSTS="twinops.plant.example",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TWINOPS_ALLOWED_HOSTS": "twinops.plant.example"}, "TWINOPS_SECRET_KEY must be set in production"),
        ({"TWINOPS_SECRET_KEY": "x" * 64}, "TWINOPS_ALLOWED_HOSTS must list the host names"),
        (
            {"TWINOPS_SECRET_KEY": "x" * 64, "TWINOPS_ALLOWED_HOSTS": "a", "TWINOPS_LOGIN_RATE_LIMIT": "lots"},
            "TWINOPS_LOGIN_RATE_LIMIT must be an integer",
        ),
    ],
)
def test_production_refuses_to_start_with_missing_or_malformed_settings(env: dict[str, str], message: str) -> None:
    result = _twinops("check", TWINOPS_ENV="production", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_celery_is_configured_to_lose_no_task_when_a_worker_dies() -> None:
    from django.conf import settings

    from twinops.config.celery import app

    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert {q.name for q in app.conf.task_queues} == {"ingest", "train", "optimize", "default"}
    # Redis re-delivers unacknowledged tasks after the visibility timeout: it must outlast the longest task.
    assert app.conf.broker_transport_options["visibility_timeout"] > settings.CELERY_TASK_TIME_LIMIT


def test_every_task_has_a_stable_name_and_goes_to_its_declared_queue() -> None:
    from twinops.config.celery import app

    app.loader.import_default_modules()
    ours = sorted(n for n in app.tasks if not n.startswith("celery."))
    # Explicit names (not module paths) so a refactor never strands queued messages.
    assert not [n for n in ours if n.startswith("twinops.")], ours
    queue_of = {name: app.amqp.router.route({}, name)["queue"].name for name in ours}
    assert queue_of["telemetry.history_import"] == "ingest"
    assert queue_of["modeling.train_twin"] == "train"  # GPU nodes serve this queue alone
    assert queue_of["recommendations.recommend_line"] == "optimize"
    assert set(queue_of.values()) <= {q.name for q in app.conf.task_queues}
    for entry in app.conf.beat_schedule.values():  # beat only schedules tasks that exist
        assert entry["task"] in ours
