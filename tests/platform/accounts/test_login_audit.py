"""Logins, failed logins, lockouts and role changes are audit events, so an auditor sees who got in and who tried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from twinops.audit.models import AuditEvent

pytestmark = pytest.mark.django_db
RIGHT, WRONG = "correct-horse-battery", "wrong"


@pytest.fixture(autouse=True)
def _empty_counts() -> Iterator[None]:
    cache.clear()  # the failure counts and lockout marks live in Redis, which outlives test transactions
    yield
    cache.clear()


def events(*actions: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__in=actions).order_by("id"))


def test_a_login_and_a_wrong_password_are_audited_without_the_password(make_user: Any) -> None:
    ada = make_user("engineer", username="ada")
    client = Client(REMOTE_ADDR="10.0.0.7")
    assert client.post("/login/", {"username": "ada", "password": WRONG}).status_code == 200
    assert client.post("/login/", {"username": "nobody", "password": WRONG}).status_code == 200
    assert client.post("/login/", {"username": "ada", "password": RIGHT}).status_code == 302
    failed_ada, failed_nobody, ok = events("user.login_failed", "user.logged_in")
    assert (failed_ada.action, failed_ada.actor_label, failed_ada.object_id) == (
        "user.login_failed",
        "anonymous",
        str(ada.pk),
    )
    assert failed_ada.after == {"username": "ada", "client": "10.0.0.7", "known_user": True}
    assert (failed_nobody.object_id, failed_nobody.after["known_user"]) == ("", False)
    assert (ok.action, ok.actor_label, ok.after["client"]) == ("user.logged_in", "ada", "10.0.0.7")
    assert all(WRONG not in e.canonical and RIGHT not in e.canonical for e in (failed_ada, failed_nobody, ok))


def test_a_lockout_is_audited_once_when_it_starts(make_user: Any, settings: Any) -> None:
    make_user("engineer", username="ada")
    client = Client(REMOTE_ADDR="10.0.0.8")
    for _ in range(settings.LOGIN_RATE_LIMIT):
        client.post("/login/", {"username": "ada", "password": WRONG})
    for _ in range(3):  # refused: the first refusal starts the lockout, the others are part of it
        assert client.post("/login/", {"username": "ada", "password": RIGHT}).status_code == 429
    [locked] = events("user.locked_out")
    assert locked.after == {"username": "ada", "client": "10.0.0.8", "known_user": True}
    assert len(events("user.login_failed")) == settings.LOGIN_RATE_LIMIT
    assert not events("user.logged_in")


def test_a_role_change_is_audited_with_the_roles_before_and_after(make_user: Any) -> None:
    dana = make_user("data", username="dana")
    call_command("user", "role", "dana", "--role", "auditor", "--reason", "moved to quality assurance")
    [changed] = events("user.role_changed")
    assert (changed.actor_label, changed.object_id, changed.reason) == (
        "system:cli",
        str(dana.pk),
        "moved to quality assurance",
    )
    assert (changed.before["roles"], changed.after["roles"]) == (["data"], ["auditor"])
    assert list(dana.groups.values_list("name", flat=True)) == ["auditor"]
