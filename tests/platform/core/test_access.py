"""Every page needs a login, roles are checked on the server, logins are rate-limited, tokens are hashed."""

import pytest
from django.test import Client

from twinops.accounts.models import ApiToken
from twinops.accounts.services import token_authenticate, token_issue, token_revoke
from twinops.audit.models import AuditEvent
from twinops.core.roles import user_can


@pytest.mark.django_db
def test_an_anonymous_visitor_is_sent_to_the_login_page(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_each_role_holds_only_its_capabilities(make_user) -> None:
    engineer, data, auditor = make_user("engineer"), make_user("data"), make_user("auditor")
    assert user_can(engineer, "approve_proposal") and not user_can(engineer, "onboard_line")
    assert user_can(data, "onboard_line") and not user_can(data, "approve_proposal")
    assert user_can(auditor, "export_audit") and not user_can(auditor, "import_telemetry")
    assert not user_can(auditor, "approve_proposal")


@pytest.mark.django_db
def test_a_logged_in_user_sees_the_line_list(client: Client, make_user) -> None:
    make_user("engineer", username="erin")
    response = client.post("/login/", {"username": "erin", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_login_is_refused_after_too_many_failures_even_with_the_right_password(
    client: Client, make_user, settings
) -> None:
    from django.core.cache import cache

    cache.clear()
    make_user("engineer", username="mallory-target")
    for _ in range(settings.LOGIN_RATE_LIMIT):
        assert client.post("/login/", {"username": "mallory-target", "password": "wrong"}).status_code == 200
    response = client.post("/login/", {"username": "mallory-target", "password": "correct-horse-battery"})
    assert response.status_code == 429
    assert b"Too many failed attempts" in response.content
    cache.clear()


@pytest.mark.django_db
def test_an_api_token_is_stored_only_as_a_hash_and_can_be_revoked(make_user) -> None:
    user = make_user("data")
    token, plaintext = token_issue(
        user=user, name="historian bridge", actor=user, lines=["reactor"], reason="nightly import"
    )
    row = ApiToken.objects.get(pk=token.pk)
    assert plaintext.split("_", 2)[2] not in (row.secret_sha256, row.prefix)
    assert token_authenticate(header=f"Bearer {plaintext}") == user
    assert token_authenticate(header=f"Bearer {plaintext}x") is None
    token_revoke(token=token, actor=user, reason="rotated")
    assert token_authenticate(header=f"Bearer {plaintext}") is None
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["token.issued", "token.revoked"]
