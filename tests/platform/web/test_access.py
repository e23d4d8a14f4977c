"""Every dashboard page needs a login; onboarding pages are for the data role only, checked on the server."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from twinops.lines.models import Line

PAGES = [
    "/",
    "/lines/web-demo/",
    "/lines/web-demo/chart/",
    "/lines/web-demo/versions/",
    "/onboard/",
    "/imports/1/",
    "/imports/1/progress/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_every_page_sends_an_anonymous_visitor_to_the_login_page(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
def test_posting_to_onboarding_without_a_login_creates_nothing(client: Client, spec_text: str) -> None:
    response = client.post("/onboard/preview/", {"spec": SimpleUploadedFile("a.yaml", spec_text.encode())})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Line.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["engineer", "auditor"])
def test_onboarding_pages_are_forbidden_to_engineers_and_auditors(login, role: str, spec_text: str) -> None:
    client = login(role)
    assert client.get("/onboard/").status_code == 403
    assert (
        client.post("/onboard/preview/", {"spec": SimpleUploadedFile("a.yaml", spec_text.encode())}).status_code == 403
    )
    assert client.post("/onboard/confirm/", {"draft": "x"}).status_code == 403
    assert not Line.objects.exists()
    assert b"Onboard a line" not in client.get("/").content  # the link is hidden too


@pytest.mark.django_db
def test_the_data_role_may_open_the_onboarding_page(login) -> None:
    response = login("data").get("/onboard/")
    assert response.status_code == 200
    assert b'name="spec"' in response.content


@pytest.mark.django_db
def test_an_unknown_line_is_a_404(login) -> None:
    assert login("engineer").get("/lines/no-such-line/").status_code == 404
