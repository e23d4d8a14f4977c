"""A recommendation whose worker dies every time fails with the reason, once, instead of running forever."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from twinops.audit.models import AuditEvent
from twinops.recommendations import services
from twinops.recommendations.models import Recommendation, RecommendationAttempt

DIED = "the worker died 2 times while running it (out of memory or a crash in a native solver?)"


class WorkerKilled(BaseException):
    """Stands for SIGKILL or a segfault in the native solver: no `except Exception` sees it, nothing is stored."""


def _dies(monkeypatch: pytest.MonkeyPatch) -> None:
    def die(line: Any, now: Any) -> None:
        raise WorkerKilled

    monkeypatch.setattr(services, "_evaluate", die)


def test_a_slot_whose_worker_dies_every_time_is_stored_failed_with_the_reason(
    ready: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, client: Any, make_user: Callable[..., Any]
) -> None:
    settings.TWINOPS_RECOMMEND_MAX_ATTEMPTS = 2
    line, now = ready
    with monkeypatch.context() as patch:
        _dies(patch)
        for _ in range(2):  # re-delivered after each death (acks_late + reject_on_worker_lost)
            with pytest.raises(WorkerKilled):
                services.recommendation_create(line=line, actor="system:beat", now=now)
        assert not Recommendation.objects.exists()
        rec = services.recommendation_create(line=line, actor="system:beat", now=now)  # gives up, runs nothing
    assert (rec.status, rec.reason) == ("failed", DIED)
    assert AuditEvent.objects.filter(action="recommendation.failed", object_id=str(rec.pk), reason=DIED).count() == 1
    assert services.recommendation_create(line=line, actor="system:beat", now=now) == rec  # a duplicate: the same
    assert not RecommendationAttempt.objects.exists()
    make_user("engineer", username="erin")
    client.login(username="erin", password="correct-horse-battery")
    page = client.get(f"/recommendations/{line.key}/?id={rec.pk}").content.decode()
    assert DIED in page


def test_one_death_is_retried_and_the_slot_gets_its_proposal(ready: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    line, now = ready
    with monkeypatch.context() as patch:
        _dies(patch)
        with pytest.raises(WorkerKilled):
            services.recommendation_create(line=line, actor="system:beat", now=now)
    rec = services.recommendation_create(line=line, actor="system:beat", now=now)
    assert rec.status == "pending" and rec.has_proposal, rec.reason
    assert not RecommendationAttempt.objects.exists()  # the counter goes with the stored recommendation
