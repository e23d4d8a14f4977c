"""The periodic tasks: one recommendation per line and slot however often they run, and expiry of old proposals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from twinops.audit.models import AuditEvent
from twinops.config.celery import app
from twinops.recommendations import services, tasks
from twinops.recommendations.models import Recommendation

from .conftest import PERIOD_S, ROWS, SPEC, two_tanks


@pytest.fixture
def live(line: Any, promote: Callable[..., Any], ingest: Callable[..., datetime], settings: Any) -> Any:
    """Return the line with a promoted twin and data up to a second ago (the tasks use the wall clock)."""
    settings.TWINOPS_RECOMMEND_EVERY_S = 86_400  # one slot a day: both runs of a test fall into the same one
    promote(line)
    rows = 60
    ingest(line, two_tanks(ROWS, seed=1)[-rows:], start=timezone.now() - timedelta(seconds=PERIOD_S * (rows - 1) + 1))
    return line


@pytest.fixture
def eager() -> Iterator[None]:
    """Run .delay() in this process (Celery's own eager mode) so that a fan-out can be followed in one test."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_running_the_line_task_twice_in_one_slot_makes_one_recommendation(live: Any) -> None:
    assert tasks.recommend_line(live.pk) == "pending"
    assert tasks.recommend_line(live.pk) == "pending"
    assert Recommendation.objects.filter(line=live).count() == 1
    assert AuditEvent.objects.filter(action__startswith="recommendation.").count() == 1


def test_the_slot_is_unique_in_the_database_too(live: Any) -> None:
    from django.db import IntegrityError, transaction

    rec = services.recommendation_create(line=live, actor="system:test")
    with pytest.raises(IntegrityError), transaction.atomic():
        Recommendation.objects.create(
            line=live,
            slot=rec.slot,
            status="withheld",
            created_at=rec.created_at,
            created_by_label="x",
            expires_at=rec.expires_at,
        )


def test_recommend_all_fans_out_to_every_line_with_a_twin_on_the_optimize_queue(
    live: Any, onboard: Callable[..., Any], eager: None
) -> None:
    bare = onboard(SPEC.replace("id: tanks", "id: bare"))  # a line without any twin: nothing to recommend yet
    assert tasks.recommend_all() == [live.pk]
    assert list(Recommendation.objects.values_list("line__key", "status")) == [("tanks", "pending")]
    assert not Recommendation.objects.filter(line=bare).exists()
    for name in ("recommendations.recommend_all", "recommendations.recommend_line", "recommendations.expire"):
        assert app.amqp.router.route({}, name)["queue"].name == "optimize"
    assert app.conf.beat_schedule["recommendations.recommend_all"]["schedule"] == 300.0


def test_a_pending_recommendation_expires_after_its_time_to_live(ready: Any, settings: Any) -> None:
    settings.TWINOPS_RECOMMENDATION_TTL_S = 120
    line, now = ready
    rec = services.recommendation_create(line=line, actor="system:test", now=now)
    assert services.recommendations_expire(now=now + timedelta(seconds=119)) == 0
    assert services.recommendations_expire(now=now + timedelta(seconds=120)) == 1
    rec.refresh_from_db()
    assert rec.status == "expired" and rec.reason.startswith("expired: not acted on before its expiry time")
    assert AuditEvent.objects.filter(action="recommendation.expired", object_id=str(rec.pk)).count() == 1
    assert services.recommendations_expire(now=now + timedelta(seconds=600)) == 0  # nothing twice


def test_withheld_and_failed_ones_never_turn_into_expired(line: Any, ingest: Callable[..., datetime]) -> None:
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = services.recommendation_create(line=line, actor="system:test", now=last)
    assert rec.status == "withheld"
    assert services.recommendations_expire(now=last + timedelta(days=1)) == 0
    rec.refresh_from_db()
    assert rec.status == "withheld"


def test_a_new_proposal_supersedes_the_pending_one_of_the_previous_slot(
    ready: Any, ingest: Callable[..., datetime], settings: Any
) -> None:
    settings.TWINOPS_RECOMMEND_EVERY_S = 60
    line, now = ready
    first = services.recommendation_create(line=line, actor="system:test", now=now)
    # the plant runs on from the first slot's data: a restart of the record would be a jump the twin rightly flags
    later = ingest(line, two_tanks(12, seed=2, after=two_tanks(ROWS, seed=1)[-1]), start=now + timedelta(seconds=5))
    second = services.recommendation_create(line=line, actor="system:test", now=later + timedelta(seconds=5))
    first.refresh_from_db()
    assert (first.status, second.status) == ("expired", "pending"), second.reason
    assert first.reason == f"superseded by recommendation {second.pk}"


def test_two_workers_racing_for_one_slot_store_one_recommendation(transactional_db: None, ready: Any) -> None:
    import threading

    from django.db import connection

    line, now = ready
    made: list[int] = []
    start = threading.Barrier(2)

    def work() -> None:
        try:
            start.wait()
            made.append(services.recommendation_create(line=line, actor="system:test", now=now).pk)
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(made) == 2 and made[0] == made[1]  # both callers get the same row
    assert Recommendation.objects.filter(line=line).count() == 1
    assert AuditEvent.objects.filter(action__startswith="recommendation.").count() == 1
