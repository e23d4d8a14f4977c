"""Production settings pass Django's deployment checks and refuse unsafe configuration."""

import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

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


# --- safe defaults for production (issue 11 item 5) -----------------------------------------------------------------
PRODUCTION = {
    "TWINOPS_ENV": "production",
    "TWINOPS_SECRET_KEY": "p" * 64,
    "TWINOPS_ALLOWED_HOSTS": "twinops.plant.example",
}


def _test_database_url() -> str:
    """Return the URL of this test's (committed) database, for a `twinops` child process."""
    from django.db import connection

    return urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()


@pytest.mark.django_db(transaction=True)
def test_the_deployment_check_fails_while_a_demo_account_keeps_its_published_password() -> None:
    from django.contrib.auth.models import User

    from twinops.demo.services import demo_users_seed

    demo_users_seed()  # as `twinops up` did in development, before the switch to production
    engineer = User.objects.get(username="engineer")
    engineer.set_password("a-new-password-nobody-printed")
    engineer.save()
    result = _twinops("check", "--deploy", DATABASE_URL=_test_database_url(), **PRODUCTION)
    assert result.returncode != 0
    for name in ("data", "auditor", "admin"):
        assert f"The demo account '{name}' still signs in with its published password" in result.stderr
    assert "'engineer'" not in result.stderr  # its password was changed: no longer the README's
    assert "twinops changepassword admin" in result.stderr  # says how to fix it


def test_production_settings_never_seed_the_demo_accounts(settings) -> None:
    from twinops.demo.services import demo_users_seed

    settings.PRODUCTION = True
    with pytest.raises(RuntimeError, match="never created in production"):
        demo_users_seed()


@pytest.mark.django_db(transaction=True)
def test_up_in_production_serves_with_gunicorn_creates_no_demo_account_and_ignores_a_forged_forwarded_proto(
    tmp_path: Path,
) -> None:
    from django.contrib.auth.models import User

    from twinops.demo.services import DEMO_USERS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path / "up.log"
    env = {**os.environ, **PRODUCTION, "DATABASE_URL": _test_database_url()}
    env.pop("TWINOPS_TRUSTED_PROXIES", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinops", "up", "--no-worker", "--no-beat", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "TwinOps is running at" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        assert "login:" not in text  # no demo login printed ...
        assert not User.objects.filter(username__in=[u for u, _ in DEMO_USERS.values()]).exists()  # ... or created
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        # plain http claiming to have come through TLS: no trusted proxy is configured, so the claim is ignored
        conn.request("GET", "/health/", headers={"Host": "twinops.plant.example", "X-Forwarded-Proto": "https"})
        response = conn.getresponse()
        assert response.status == 301 and response.getheader("Location", "").startswith("https://")
        assert "gunicorn" in (response.getheader("Server") or "")  # not Django's development server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # what a service manager sends
        proc.wait(timeout=60)
    assert "Stopped." in log.read_text(errors="replace")


@pytest.mark.django_db
@pytest.mark.parametrize(("remote", "secure"), [("10.0.0.7", True), ("203.0.113.9", False)])
def test_x_forwarded_proto_is_believed_from_a_trusted_proxy_only(settings, remote: str, secure: bool) -> None:
    from django.test import Client

    settings.TRUSTED_PROXIES = ("10.0.0.0/8",)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # production with trusted proxies
    settings.SECURE_SSL_REDIRECT = True
    response = Client(REMOTE_ADDR=remote).get("/health/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == (200 if secure else 301)


def test_production_trusts_no_forwarded_proto_without_a_trusted_proxy() -> None:
    code = "from django.conf import settings; print(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None))"
    plain = _twinops("shell", "-c", code, **PRODUCTION)
    assert plain.stdout.splitlines()[-1] == "None", plain.stderr
    proxied = _twinops("shell", "-c", code, TWINOPS_TRUSTED_PROXIES="10.0.0.5", **PRODUCTION)
    assert proxied.stdout.splitlines()[-1] == "('HTTP_X_FORWARDED_PROTO', 'https')", proxied.stderr


@pytest.mark.django_db
def test_a_sign_in_lasts_one_shift_by_default_and_the_plant_can_choose(client, make_user) -> None:
    make_user("engineer", username="eve")
    response = client.post("/login/", {"username": "eve", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["max-age"] == 12 * 3600
    code = "from django.conf import settings; print(settings.SESSION_COOKIE_AGE)"
    assert _twinops("shell", "-c", code, TWINOPS_SESSION_HOURS="8").stdout.split()[-1] == str(8 * 3600)
    refused = _twinops("check", TWINOPS_SESSION_HOURS="a shift")
    assert refused.returncode != 0 and "TWINOPS_SESSION_HOURS must be an integer" in refused.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "twinops-dev"])
def test_listening_beyond_this_machine_in_development_prints_a_loud_warning(settings, host: str) -> None:
    from twinops.processes import exposure_warning

    settings.PRODUCTION = False
    warning = exposure_warning(host)
    assert warning is not None and f"listening on {host}" in warning and "DEVELOPMENT" in warning
    for local in ("127.0.0.1", "localhost", "::1"):
        assert exposure_warning(local) is None
    settings.PRODUCTION = True
    assert exposure_warning(host) is None  # production is meant to be reached (behind its TLS proxy)
