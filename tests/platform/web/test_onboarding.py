"""Onboarding from the web: upload a spec, see it previewed or its problems listed precisely, confirm to create."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile


def counts() -> dict[str, int]:
    from twinops.audit.models import AuditEvent
    from twinops.lines.models import Line, SpecVersion, Tag

    return {m.__name__: m.objects.count() for m in (Line, Tag, SpecVersion, AuditEvent)}


def upload(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="application/x-yaml")


@pytest.mark.django_db
def test_preview_lists_each_problem_as_file_line_field_reason_and_creates_nothing(login, spec_text: str) -> None:
    client = login("data")
    bad = spec_text.replace("limits: {low: 60, high: 90}", "limits: {low: 60, high: 900}").replace(
        "role: DV", "role: XV"
    )
    before = counts()
    response = client.post("/onboard/preview/", {"spec": upload("reactor.yaml", bad)})
    assert response.status_code == 422
    text = re.sub(r"\s+", " ", response.content.decode())
    assert (
        "reactor.yaml:13</span> — <code>tags[0].limits.high</code> — operating limit 900 is above the physical range high (200)"
        in text
    )
    assert "reactor.yaml:22</span> — <code>tags[2].role</code> — must be one of CV, MV, DV" in text
    assert "nothing was created" in text
    assert counts() == before


@pytest.mark.django_db
def test_preview_shows_the_parsed_tags_by_role_with_limits_and_creates_nothing(login, spec_text: str) -> None:
    client = login("data")
    before = counts()
    response = client.post("/onboard/preview/", {"spec": upload("reactor.yaml", spec_text)})
    assert response.status_code == 200
    html = re.sub(r"\s+", " ", response.content.decode())
    assert "Controlled variables (1)" in html and "Manipulated variables (setpoints) (1)" in html
    assert "Measured disturbances (1)" in html
    assert "60.0 … 90.0" in html and "5.0 … 40.0" in html  # operating limits of T and F
    assert "Nothing has been created yet" in html
    assert counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("reactor.txt", b"line: {}", "must be a .yaml, .yml or .json file"),
        ("reactor.yaml", b"", "is empty"),
        ("reactor.yaml", "line: é".encode("latin-1"), "not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_a_spec_is_refused_with_a_clear_message(
    login, name: str, content: bytes, message: str
) -> None:
    client = login("data")  # signing in is itself audited: count from after it
    before = counts()
    response = client.post("/onboard/preview/", {"spec": SimpleUploadedFile(name, content)})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert counts() == before


@pytest.mark.django_db
def test_confirming_a_preview_without_history_creates_the_line_with_the_reason(login, spec_text: str) -> None:
    from twinops.lines.models import Line

    client = login("data")
    preview = client.post("/onboard/preview/", {"spec": upload("reactor.yaml", spec_text)})
    draft = re.search(r'name="draft" value="([^"]+)"', preview.content.decode()).group(1)
    response = client.post("/onboard/confirm/", {"draft": draft, "reason": "commissioning"})
    assert response.status_code == 302 and response["Location"] == "/lines/web-demo/"
    line = Line.objects.get(key="web-demo")
    assert line.tags.count() == 3
    assert line.spec_versions.get().reason == "commissioning"
    # The draft is used up: confirming again does not make a second line or an error page.
    again = client.post("/onboard/confirm/", {"draft": draft})
    assert again.status_code == 302 and again["Location"] == "/onboard/"


@pytest.mark.django_db
def test_a_history_file_of_the_wrong_type_is_refused_before_anything_is_created(login, spec_text: str) -> None:
    client = login("data")
    preview = client.post("/onboard/preview/", {"spec": upload("reactor.yaml", spec_text)})
    draft = re.search(r'name="draft" value="([^"]+)"', preview.content.decode()).group(1)
    before = counts()
    response = client.post(
        "/onboard/confirm/", {"draft": draft, "history": SimpleUploadedFile("h.xlsx", b"PK\x03\x04")}
    )
    assert response.status_code == 400
    assert "must be a .csv or .parquet file" in response.content.decode()
    assert counts() == before


@pytest.mark.django_db
def test_the_spec_versions_page_says_who_changed_what_when_and_why(login, spec_text: str, make_user) -> None:
    from twinops.lines.services import spec_version_create
    from twinops.onboarding.services import line_onboard

    dana = make_user("data", username="dana")
    line = line_onboard(text=spec_text, filename="v1.yaml", actor=dana, reason="commissioning").line
    changed = spec_text.replace("limits: {low: 60, high: 90}", "limits: {low: 60, high: 85}")
    spec_version_create(line=line, text=changed, filename="v2.yaml", actor=dana, reason="tighter T limit after trial")
    html = re.sub(r"\s+", " ", login("auditor").get("/lines/web-demo/versions/").content.decode())
    assert "v2" in html and "tighter T limit after trial" in html and "dana" in html
    assert "T: limits.high 90 -&gt; 85" in html
