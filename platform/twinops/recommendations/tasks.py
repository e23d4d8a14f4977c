"""Celery tasks of the recommendations app: thin wrappers that load ids and call one service.

The recommendation services send no tasks, so there is no cycle and the services are imported at the top.

All run on the `optimize` queue (its workers hold the cached controllers), routed by CELERY_TASK_ROUTES in settings.
"""

from __future__ import annotations

from celery import shared_task

from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.recommendations import selectors, services


@shared_task(name="recommendations.recommend_all")
def recommend_all() -> list[int]:
    """Fan out one recommend_line task per line with a twin; return the line ids sent."""
    ids = selectors.lines_to_recommend()
    for line_id in ids:
        recommend_line.delay(line_id)
    return ids


@shared_task(name="recommendations.recommend_line", acks_late=True)
def recommend_line(line_id: int) -> str:
    """Make the line's recommendation for the current slot; a second run in the same slot changes nothing."""
    try:
        line = line_get(pk=line_id)
    except Line.DoesNotExist:
        return "no such line"
    return services.recommendation_create(line=line, actor="system:beat").status


@shared_task(name="recommendations.expire")
def expire() -> int:
    """Mark pending recommendations past their expiry time expired."""
    return services.recommendations_expire()


@shared_task(name="recommendations.outcomes_record")
def outcomes_record() -> int:
    """Record the outcome of each shadow or released proposal whose horizon has passed; each one once."""
    return services.outcomes_record()
