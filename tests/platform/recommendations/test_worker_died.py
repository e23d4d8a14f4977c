"""A worker killed mid-recommendation costs no slot: beat sends it again at once, or stores it FAILED with the reason.

A kill -9 leaves the task's message unacknowledged in Redis for the visibility timeout (hours) and beat asks only for
the next slot, so here no message is ever re-delivered: only the re-send check (what beat runs) can save the slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.utils import timezone

from twinops.audit.models import AuditEvent
from twinops.core import locks
from twinops.recommendations import services, tasks
from twinops.recommendations.models import Recommendation, RecommendationAttempt
from twinops.telemetry import store

from .conftest import PERIOD_S, ROWS, two_tanks

DIED_TWICE = "the worker died 2 times while running it (out of memory or a crash in a native solver?)"
SLOT_ENDED = (
    "the worker died once while running it (out of memory or a crash in a native solver?); not made again because "
    "its slot had ended (the next slot's recommendation takes its place)"
)


class WorkerKilled(BaseException):
    """Stands for SIGKILL or a segfault in the native solver: no `except Exception` sees it, nothing is stored."""


@pytest.fixture
def live(line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime], settings: Any) -> Any:
    """Return the line with a promoted twin and data up to a second ago (the tasks use the wall clock)."""
    settings.TWINOPS_RECOMMEND_EVERY_S = 86_400  # one slot a day: the whole test falls into one slot
    promote(line)
    rows = 60
    ingest(line, two_tanks(ROWS, seed=1)[-rows:], start=timezone.now() - timedelta(seconds=PERIOD_S * (rows - 1) + 1))
    return line


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, datetime]]:
    """Record the (line id, slot) sent again to the optimize queue instead of sending them to the shared broker."""
    out: list[tuple[int, datetime]] = []
    monkeypatch.setattr(tasks, "recommend_line_send", lambda line_id, slot: out.append((line_id, slot)))
    return out


@pytest.fixture
def resend(django_capture_on_commit_callbacks: Any) -> Callable[..., list[int]]:
    """Run the re-send check as beat does, its messages sent once its transaction commits."""

    def run(**kwargs: Any) -> list[int]:
        with django_capture_on_commit_callbacks(execute=True):
            return services.recommendation_attempts_resend(**kwargs)

    return run


def _die(line: Any, now: Any) -> None:
    raise WorkerKilled


@pytest.fixture
def dies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every worker die in the middle of the recommendation (after its attempt is counted, before storing)."""
    with monkeypatch.context() as patch:
        patch.setattr(services, "_evaluate", _die)
        yield


def _killed_mid_recommendation(line_id: int, slot: str | None = None) -> None:
    with pytest.raises(WorkerKilled):
        tasks.recommend_line(line_id, slot)


def test_a_slot_whose_worker_was_killed_is_sent_again_at_once_and_gets_its_one_proposal(
    live: Any, sent: list[tuple[int, datetime]], resend: Callable[..., list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(services, "_evaluate", _die)
        _killed_mid_recommendation(live.pk)
    attempt = RecommendationAttempt.objects.get(line=live)  # started, unfinished, its message lost
    assert not Recommendation.objects.exists()
    assert resend() == [attempt.pk]  # beat's next check: no worker holds it, so it is sent again now, not in hours
    assert sent == [(live.pk, attempt.slot)]
    assert resend() == [] and len(sent) == 1  # sent and waiting for a worker: not sent twice
    assert tasks.recommend_line(live.pk, attempt.slot.isoformat()) == "pending"  # the message sent again
    rec = Recommendation.objects.get(line=live)
    assert rec.slot == attempt.slot and rec.has_proposal
    assert tasks.recommend_line(live.pk) == "pending"  # the dead worker's own message, hours later: the same one
    assert Recommendation.objects.filter(line=live).count() == 1
    assert AuditEvent.objects.filter(action__startswith="recommendation.").count() == 1
    assert not RecommendationAttempt.objects.exists() and resend() == []


def test_a_slot_whose_worker_dies_every_time_it_is_sent_is_stored_failed_with_the_reason_once(
    live: Any,
    sent: list[tuple[int, datetime]],
    resend: Callable[..., list[int]],
    dies: None,
    settings: Any,
    client: Any,
    make_user: Callable[..., Any],
) -> None:
    settings.TWINOPS_RECOMMEND_MAX_ATTEMPTS = 2
    _killed_mid_recommendation(live.pk)
    assert len(resend()) == 1
    _killed_mid_recommendation(live.pk, sent[0][1].isoformat())  # the slot sent again kills its worker too
    assert len(resend()) == 1  # two deaths: given up on here, without sending it to a third worker
    assert len(sent) == 1
    rec = Recommendation.objects.get(line=live)
    assert (rec.status, rec.reason, rec.slot) == ("failed", DIED_TWICE, sent[0][1])
    assert AuditEvent.objects.filter(action="recommendation.failed", reason=DIED_TWICE).count() == 1
    assert tasks.recommend_line(live.pk) == "failed"  # a late duplicate runs nothing and stores nothing
    assert Recommendation.objects.count() == 1 and not RecommendationAttempt.objects.exists()
    assert resend() == [] and len(sent) == 1
    make_user("engineer", username="erin")
    client.login(username="erin", password="correct-horse-battery")
    assert DIED_TWICE in client.get(f"/recommendations/{live.key}/?id={rec.pk}").content.decode()


def test_a_dead_workers_slot_that_has_ended_is_stored_failed_saying_the_next_slot_takes_its_place(
    ready: Any, sent: list[tuple[int, datetime]], resend: Callable[..., list[int]], dies: None
) -> None:
    line, now = ready
    with pytest.raises(WorkerKilled):
        services.recommendation_create(line=line, actor="system:beat", now=now)
    slot = services.slot_of(now)
    later = slot + timedelta(seconds=services.conf.every_s())  # the first instant of the next slot
    assert len(resend(now=later)) == 1
    assert sent == []  # too late to make it: the next slot's own recommendation is made from the data of then
    rec = Recommendation.objects.get(line=line)
    assert (rec.status, rec.reason, rec.slot) == ("failed", SLOT_ENDED, slot)


def test_a_slot_sent_again_that_reaches_a_worker_after_its_slot_ended_is_stored_failed_not_made(
    ready: Any, dies: None
) -> None:
    line, now = ready
    with pytest.raises(WorkerKilled):
        services.recommendation_create(line=line, actor="system:beat", now=now)
    slot = services.slot_of(now)
    later = slot + timedelta(seconds=services.conf.every_s() + 1)
    rec = services.recommendation_create(line=line, actor="system:beat", now=later, slot=slot)  # runs nothing
    assert (rec.status, rec.reason, rec.slot) == ("failed", SLOT_ENDED, slot)


def test_a_slot_a_live_worker_is_making_is_not_sent_again(
    live: Any, sent: list[tuple[int, datetime]], resend: Callable[..., list[int]]
) -> None:
    slot = services.slot_of(timezone.now())
    attempt = RecommendationAttempt.objects.create(line=live, slot=slot, attempts=1, started_at=timezone.now())
    with psycopg.connect(**store._side_params(), autocommit=True) as worker:  # a live worker holds its attempt
        worker.execute("SELECT pg_advisory_lock(%s, %s)", [locks.RECOMMENDATION_ATTEMPT, attempt.pk])
        assert resend() == [] and sent == []
    attempt.refresh_from_db()
    assert attempt.attempts == 1 and not Recommendation.objects.exists()
