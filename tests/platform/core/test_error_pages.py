"""A signed-in user who hits a missing page or a forbidden one gets a styled page, never Django's debug page."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from twinops.accounts.services import user_create

pytestmark = pytest.mark.django_db


def signed_in(role: str) -> Client:
    c = Client()
    c.force_login(user_create(username=f"u_{role}", role=role, password="a-Long-password-1", actor="system:test"))
    return c


@override_settings(DEBUG=True)
def test_a_missing_page_is_styled_and_shows_no_url_map_even_in_debug() -> None:
    answer = signed_in("engineer").get("/lines/no-such-line/")
    page = answer.content.decode()
    assert answer.status_code == 404
    assert "Not found" in page and "Back to the lines" in page
    assert "URLconf" not in page and "Using the URLconf" not in page
    unknown = signed_in("data").get("/no/such/url/at/all/")
    assert unknown.status_code == 404 and "URLconf" not in unknown.content.decode()


@override_settings(DEBUG=True)
def test_a_forbidden_page_says_why_and_who_can_help() -> None:
    answer = signed_in("auditor").get("/onboard/")
    page = answer.content.decode()
    assert answer.status_code == 403
    assert "Not allowed" in page and "onboard production lines" in page and "An admin can give your account" in page
