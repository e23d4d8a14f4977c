"""A queued history import says what it waits for: imports ahead of it, or an ingest worker that never came."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from twinops.telemetry.models import HistoryImportJob

pytestmark = pytest.mark.django_db


def _queued(line, *, age_s: float, name: str) -> HistoryImportJob:
    return HistoryImportJob.objects.create(
        line=line, path=f"/nonexistent/{name}", filename=name, created_at=timezone.now() - timedelta(seconds=age_s)
    )


def test_a_queued_import_counts_the_imports_ahead_of_it(login, onboarded) -> None:
    line = onboarded()
    _queued(line, age_s=30, name="first.csv")
    _queued(line, age_s=20, name="second.csv")
    mine = _queued(line, age_s=10, name="mine.csv")
    _queued(line, age_s=5, name="later.csv")  # behind mine: not counted

    page = login("data").get(reverse("import-progress", args=[mine.pk])).content.decode()

    assert "2 imports ahead of this one" in page
    assert "twin training never holds them up" in page


def test_an_import_nobody_takes_asks_whether_an_ingest_worker_runs(login, onboarded) -> None:
    line = onboarded()
    stuck = _queued(line, age_s=300, name="stuck.csv")

    page = login("data").get(reverse("import-progress", args=[stuck.pk])).content.decode()

    waited = re.search(r"No ingest worker has taken this import in (\d+) s", page)
    assert waited and int(waited.group(1)) >= 300, page
    assert "twinops worker -Q ingest" in page
