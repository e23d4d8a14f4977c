"""The demo promotes each line's first promotable twin by itself, audited as its own action, and only once."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.platform.recommendations.conftest import SPEC, TINY, trained  # noqa: F401  (trained: a fixture)
from twinops.audit.models import AuditEvent
from twinops.demo import services as demo
from twinops.modeling import services as modeling
from twinops.modeling.models import TwinVersion


@pytest.fixture
def line(db: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    from twinops.onboarding.services import line_onboard

    monkeypatch.setattr(demo, "demo_lines", lambda: ["tanks"])  # the two-tank line stands in for a simulated one
    return line_onboard(text=SPEC, filename="tanks.yaml", actor="system:test").line


def _register(line: Any, trained: Any, *, promotable: bool) -> TwinVersion:  # noqa: F811
    record, outcome = trained
    report = dataclasses.replace(outcome.report, promotable=promotable, reason=f"promotable={promotable} in tests")
    job = modeling.training_job_create(line=line, actor="system:test", config_overrides=TINY, enqueue=False)
    job = modeling.training_job_claim(job_id=job.pk)
    return modeling.twin_version_register(job=job, record=record, outcome=dataclasses.replace(outcome, report=report))


def _status(line: Any) -> dict[int, str]:
    return dict(TwinVersion.objects.filter(line=line).values_list("version", "status"))


def test_the_demo_promotes_the_first_promotable_twin_once_as_its_own_audited_action(
    line: Any,
    trained: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    asked: list[tuple[int, str]] = []  # the line's first proposal is asked for at once, not at beat's next period
    monkeypatch.setattr(
        demo.recommendation_tasks.recommend_line, "delay", lambda line_id, actor: asked.append((line_id, actor))
    )
    assert demo.demo_twins_promote() == []  # no twin yet: nothing to do
    _register(line, trained, promotable=False)
    assert demo.demo_twins_promote() == []  # v1 does not beat the baseline: it stays a candidate
    _register(line, trained, promotable=True)
    _register(line, trained, promotable=True)
    with django_capture_on_commit_callbacks() as sent:
        assert demo.demo_twins_promote() == [("tanks", 2)]
    assert asked == []  # asked for only once the promotion commits
    for callback in sent:
        callback()
    assert asked == [(line.pk, "system:demo")]
    assert _status(line) == {1: "candidate", 2: "promoted", 3: "candidate"}
    event = AuditEvent.objects.get(action="twin.promoted")
    assert event.actor_label == "system:demo" and event.reason.startswith("demo: the line's first promotable twin")
    assert demo.demo_twins_promote() == []  # already done: nothing twice
    assert AuditEvent.objects.filter(action="twin.promoted").count() == 1
    assert asked == [(line.pk, "system:demo")]  # and asked once


def test_the_demo_leaves_a_line_alone_once_a_person_has_chosen_its_twin(line: Any, trained: Any) -> None:  # noqa: F811
    first = _register(line, trained, promotable=True)
    second = _register(line, trained, promotable=True)
    modeling.twin_promote(version=second, actor="system:test", reason="the data team chose v2")
    modeling.twin_promote(version=first, actor="system:test", reason="back to v1")
    assert demo.demo_twins_promote() == []
    assert _status(line) == {1: "promoted", 2: "retired"}
