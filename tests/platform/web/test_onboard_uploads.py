"""Onboarding with a history file: it needs the import permission, and uploaded files never pile up on disk."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.platform.web.conftest import PASSWORD, SPEC, history_csv

pytestmark = pytest.mark.django_db(transaction=True)  # the import worker claims its job on its own connection


@pytest.fixture(autouse=True)
def uploads(settings, tmp_path, monkeypatch):
    """Give uploads their own media folder and keep import tasks off the shared broker."""
    from twinops.telemetry import tasks

    settings.MEDIA_ROOT = str(tmp_path / "media")
    monkeypatch.setattr(tasks, "history_import_send", lambda job_id: None)
    return tmp_path / "media" / "history-uploads"


def _confirm(client, history: str | None):
    preview = client.post("/onboard/preview/", {"spec": SimpleUploadedFile("reactor.yaml", SPEC.encode())})
    draft = re.search(r'name="draft" value="([^"]+)"', preview.content.decode()).group(1)
    data = {"draft": draft, "reason": "commissioning"}
    if history is not None:
        data["history"] = SimpleUploadedFile("history.csv", history.encode(), content_type="text/csv")
    return client.post("/onboard/confirm/", data)


def _history() -> str:
    return history_csv(end=datetime(2026, 3, 1, 12, tzinfo=UTC), minutes=30)


def test_onboarding_with_history_needs_the_import_permission(client, uploads) -> None:
    from twinops.lines.models import Line
    from twinops.telemetry.models import HistoryImportJob

    # A custom group that may onboard lines but not import telemetry.
    group = Group.objects.create(name="line-onboarders")
    group.permissions.set(Permission.objects.filter(codename__in=["view_plant", "onboard_line"]))
    user = User.objects.create_user(username="onboarder-only", password=PASSWORD)
    user.groups.add(group)
    client.force_login(user)

    response = _confirm(client, _history())
    assert response.status_code == 403
    assert "onboard the line without the file" in response.content.decode()
    assert not Line.objects.exists() and not HistoryImportJob.objects.exists()
    assert not uploads.exists() or not any(uploads.iterdir())  # the upload was not kept either

    response = _confirm(client, None)  # the same user may onboard the line without its history
    assert response.status_code == 302 and Line.objects.filter(key="web-demo").exists()


def test_an_uploaded_history_file_is_deleted_once_its_import_is_done(client, make_user, uploads) -> None:
    from twinops.telemetry.models import HistoryImportJob
    from twinops.telemetry.services import history_import_job_run

    client.force_login(make_user("data", username="data-web"))
    assert _confirm(client, _history()).status_code == 302
    job = HistoryImportJob.objects.get()
    assert os.path.exists(job.path) and os.path.dirname(job.path) == str(uploads)  # the worker reads it from here
    assert history_import_job_run(job_id=job.pk) == "done"
    assert not os.path.exists(job.path) and list(uploads.iterdir()) == []


def test_a_failed_import_deletes_its_file_too(client, make_user, uploads) -> None:
    from twinops.telemetry.models import HistoryImportJob
    from twinops.telemetry.services import history_import_job_run

    client.force_login(make_user("data", username="data-web"))
    assert _confirm(client, "timestamp,Pressure\n2026-03-01T00:00:00Z,1\n").status_code == 302
    job = HistoryImportJob.objects.get()
    assert history_import_job_run(job_id=job.pk) == "failed"
    assert list(uploads.iterdir()) == []


def test_each_upload_sweeps_old_files_no_unfinished_import_needs(client, make_user, uploads, settings) -> None:
    from twinops.telemetry.models import HistoryImportJob

    settings.TWINOPS_UPLOAD_MAX_AGE_H = 1
    day_ago = time.time() - 86_400
    client.force_login(make_user("data", username="data-web"))
    assert _confirm(client, _history()).status_code == 302
    job = HistoryImportJob.objects.get()
    new_upload = job.path
    orphan, fresh, waiting = uploads / "orphan.csv", uploads / "fresh.csv", uploads / "waiting.csv"
    for path in (orphan, fresh, waiting):
        path.write_text("timestamp,T\n")
    os.utime(orphan, (day_ago, day_ago))  # left by a web process that died before its job was committed
    # An old file whose import is still queued (the worker was down all day) is still needed.
    os.utime(waiting, (day_ago, day_ago))
    HistoryImportJob.objects.filter(pk=job.pk).update(path=str(waiting))

    other = SPEC.replace("id: web-demo", "id: web-demo-2")
    preview = client.post("/onboard/preview/", {"spec": SimpleUploadedFile("r2.yaml", other.encode())})
    draft = re.search(r'name="draft" value="([^"]+)"', preview.content.decode()).group(1)
    history = SimpleUploadedFile("h.csv", _history().encode(), content_type="text/csv")
    assert client.post("/onboard/confirm/", {"draft": draft, "history": history}).status_code == 302

    left = {p.name for p in uploads.iterdir()}
    assert "orphan.csv" not in left
    assert {"fresh.csv", "waiting.csv", os.path.basename(new_upload)} <= left
    assert len(left) == 4  # and the second upload
