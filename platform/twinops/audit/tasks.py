"""Celery tasks of the audit app. Its services send no tasks, so they are imported at the top."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from twinops.audit.services import audit_anchor


@shared_task(name="audit.anchor")
def anchor() -> dict[str, Any] | None:
    """Sign the chain head into the anchor log (beat, every minute); a no-op when the head is already signed."""
    return audit_anchor()
