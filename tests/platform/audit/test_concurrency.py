"""Concurrent writers never fork the chain, and an append never waits for someone else's long import."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.db import connection, transaction

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify, audit_record
from twinops.onboarding.services import line_onboard

from ..lines.conftest import SMALL_SPEC

WRITERS, EACH = 8, 25


def _writer(n: int, errors: list[BaseException]) -> None:
    try:
        for i in range(EACH):
            with transaction.atomic():  # each thread has its own database connection
                audit_record(actor=f"system:writer{n}", action="test.done", object_type="x", object_id=f"{n}-{i}")
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_writers_leave_one_linear_chain_that_verifies() -> None:
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_writer, args=(n, errors)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    events = list(AuditEvent.objects.order_by("id").values_list("id", "prev_sha256", "sha256"))
    assert [e[0] for e in events] == list(range(1, WRITERS * EACH + 1))
    assert len({e[1] for e in events}) == len(events)  # no two events share a predecessor: no fork
    assert all(later[1] == earlier[2] for earlier, later in zip(events, events[1:], strict=False))
    check = audit_chain_verify()
    assert check.ok and check.checked == WRITERS * EACH


@pytest.mark.django_db(transaction=True)
def test_an_audited_action_does_not_wait_for_a_line_onboarding_import(make_user, tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    history.write_text("timestamp,T,F,T_in\n" + "".join(f"2026-03-01T00:{m:02d}:00Z,70,10,20\n" for m in range(30)))
    importing, release = threading.Event(), threading.Event()
    outcome: list[object] = []
    user = make_user("data")

    def hold(done: int, total: int) -> None:  # the import pauses mid-way, its transaction open
        importing.set()
        release.wait(timeout=60)

    def onboard() -> None:
        try:
            outcome.append(
                line_onboard(text=SMALL_SPEC, filename="s.yaml", actor=user, history_path=history, on_progress=hold)
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=onboard)
    worker.start()
    try:
        assert importing.wait(timeout=60)
        started = time.monotonic()
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = '5s'")  # waiting on the chain lock would raise here
            event = audit_record(actor="system:test", action="test.done", object_type="x", object_id="1")
        assert time.monotonic() - started < 5
    finally:
        release.set()
        worker.join(timeout=60)
    assert not isinstance(outcome[0], BaseException), outcome[0]
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["test.done", "line.created", "spec.version_created", "history.imported"]
    assert event.id == 1 and audit_chain_verify().ok
