"""Celery tasks of the recommendations app: thin wrappers that load ids and call one service.

The services import this module at the top to send a dead worker's slot again, so a task imports the services in
its body. The recommendations themselves run on the `optimize` queue (its workers hold the cached controllers);
the re-send check, a query, on `default` with the other apps' (CELERY_TASK_ROUTES in settings).
"""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.recommendations import selectors


@shared_task(name="recommendations.recommend_all")
def recommend_all() -> list[int]:
    """Fan out one recommend_line task per line with a twin; return the line ids sent."""
    ids = selectors.lines_to_recommend()
    for line_id in ids:
        recommend_line.delay(line_id)
    return ids


@shared_task(name="recommendations.recommend_line", acks_late=True)
def recommend_line(line_id: int, slot: str | None = None, actor: str = "system:beat") -> str:
    """Make the line's recommendation for the current slot, or for `slot` (ISO) when its worker died; once per slot.

    `actor`: who asked, as the audit log names it (beat's schedule, or e.g. the demo right after it promoted a twin).
    """
    from twinops.recommendations import services  # in the body: the services import this module (see above)

    try:
        line = line_get(pk=line_id)
    except Line.DoesNotExist:
        return "no such line"
    at = datetime.fromisoformat(slot) if slot else None
    return services.recommendation_create(line=line, actor=actor, slot=at).status


def recommend_line_send(line_id: int, slot: datetime) -> None:
    """Queue the recommendation of a line's slot whose worker died (on the optimize queue)."""
    recommend_line.delay(line_id, slot.isoformat())


@shared_task(name="recommendations.resend_dead_slots")
def resend_dead_slots() -> list[int]:
    """Send again the slots whose worker died mid-recommendation, or store them FAILED with the reason; return ids."""
    from twinops.recommendations import services  # in the body: the services import this module (see above)

    return services.recommendation_attempts_resend()


@shared_task(name="recommendations.expire")
def expire() -> int:
    """Mark pending recommendations past their expiry time expired."""
    from twinops.recommendations import services  # in the body: the services import this module (see above)

    return services.recommendations_expire()


@shared_task(name="recommendations.outcomes_record")
def outcomes_record() -> int:
    """Record the outcome of each shadow or released proposal whose horizon has passed; each one once."""
    from twinops.recommendations import services  # in the body: the services import this module (see above)

    return services.outcomes_record()
