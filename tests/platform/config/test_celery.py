"""The Celery wiring is one table: every registered task has one route to a served queue, beat runs only real tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from twinops.config.celery import app

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def registered() -> set[str]:
    """Return the names of the platform's tasks as the worker registers them (Celery's own tasks left out)."""
    app.loader.import_default_modules()
    names = {name for name in app.tasks if not name.startswith("celery.")}
    assert len(names) >= 6, names  # autodiscovery found the apps' task modules
    return names


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record (task name, queue) of each message Celery would publish, instead of publishing it."""
    sent: list[tuple[str, str]] = []

    def record(producer: Any, name: str, message: Any, **options: Any) -> None:
        sent.append((name, options["queue"].name))

    monkeypatch.setattr(app.amqp, "send_task_message", record)
    return sent


def test_every_registered_task_has_exactly_one_route_to_a_served_queue(registered: set[str]) -> None:
    routes = settings.CELERY_TASK_ROUTES
    served = {q.name for q in app.conf.task_queues}
    for name in sorted(registered):
        matching = [pattern for pattern in routes if fnmatchcase(name, pattern)]
        assert len(matching) == 1, f"{name} has routes {matching}; give it exactly one in CELERY_TASK_ROUTES"
        assert routes[matching[0]]["queue"] in served, name
        assert app.amqp.router.route({}, name)["queue"].name == routes[matching[0]]["queue"]  # the table is in force
    stale = [pattern for pattern in routes if not any(fnmatchcase(name, pattern) for name in registered)]
    assert not stale, f"routes to tasks that do not exist: {stale}"


def test_every_beat_entry_runs_a_registered_task_and_leaves_the_queue_to_the_routes(registered: set[str]) -> None:
    assert app.conf.beat_schedule, "beat has nothing to run"
    for key, entry in app.conf.beat_schedule.items():
        assert entry["task"] in registered, key
        assert entry["schedule"] > 0, key
        assert "queue" not in entry.get("options", {}), f"{key} names a queue; the routes table decides"


def test_every_task_is_published_to_the_queue_of_its_route(registered: set[str], published: list) -> None:
    from twinops.telemetry import tasks as telemetry_tasks

    for name in sorted(registered):
        app.send_task(name)  # sent by name, as beat does; nothing runs, the message is only recorded
    telemetry_tasks.history_import_send(1)  # the send helper the import service uses
    queue_of = {name: settings.CELERY_TASK_ROUTES[name]["queue"] for name in registered}
    assert published[:-1] == [(name, queue_of[name]) for name in sorted(registered)]
    assert published[-1] == ("telemetry.history_import", "ingest")


def _beat_and_slot_period(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from twinops.config.celery import app; "
        "from twinops.recommendations import conf; "
        "print(app.conf.beat_schedule['recommendations.recommend_all']['schedule'], conf.every_s())"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_the_recommendation_period_sets_beat_and_the_slot_alike_and_a_bad_one_fails_loudly() -> None:
    run = _beat_and_slot_period({"TWINOPS_RECOMMEND_EVERY_S": "120"})
    assert run.stdout.split() == ["120.0", "120.0"], run.stderr
    run = _beat_and_slot_period({"TWINOPS_RECOMMEND_EVERY_S": "inf"})
    assert run.returncode != 0 and "TWINOPS_RECOMMEND_EVERY_S must be a finite number > 0" in run.stderr


def test_a_process_that_only_loads_django_sends_tasks_through_the_platforms_broker() -> None:
    """The web server, the CLI and `twinops demo` never import the Celery app themselves; sending must still work."""
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from twinops.modeling.tasks import train_twin; "
        "print(train_twin.app.main, train_twin.app.conf.broker_url == settings.CELERY_BROKER_URL)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert run.stdout.split() == ["twinops", "True"], run.stderr[-2000:]
