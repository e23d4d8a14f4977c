"""A proposal's decision chain: data window → twin → proposal → review → release writes → outcome, each link checked."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from tests.platform.recommendations.conftest import (  # noqa: F401 -- fixtures
    _fresh_caches,
    _one_torch_thread,
    ingest,
    line,
    onboard,
    promote,
    ready,
    trained,
)
from twinops.accounts.services import user_create
from twinops.audit.services import audit_record
from twinops.modeling.models import TwinVersion
from twinops.recommendations.models import Recommendation, Signature
from twinops.recommendations.services import proposal_sign, recommendation_create
from twinops.releases.models import Release, ReleaseWrite

pytestmark = pytest.mark.django_db
PASSWORD = "a-Long-password-1"


@pytest.fixture
def approved(ready: tuple[Any, Any], anchor_files: Any) -> Recommendation:  # noqa: F811 -- the imported fixture
    """Return a proposal signed by an engineer."""
    tanks, now = ready
    rec = recommendation_create(line=tanks, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    ada = user_create(username="ada", role="engineer", password=PASSWORD, actor="system:test")
    return proposal_sign(
        recommendation_id=rec.pk, actor=ada, decision="approve", now=now, client="test", password=PASSWORD
    )


def auditor() -> Client:
    client = Client()
    client.force_login(user_create(username="audrey", role="auditor", password=PASSWORD, actor="system:test"))
    return client


def chain_json(client: Client, rec: Recommendation) -> dict[str, Any]:
    response = client.get(f"/audit/proposals/{rec.pk}/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def verdicts(doc: dict[str, Any]) -> dict[str, bool | None]:
    return {link["key"]: link["verified"] for link in doc["links"]}


def test_an_approved_proposal_shows_every_link_verified_as_a_page_and_as_json(approved: Recommendation) -> None:
    client = auditor()
    doc = chain_json(client, approved)
    assert verdicts(doc) == {
        "data_window": True,
        "twin": True,
        "proposal": True,
        "review": True,
        "release": None,
        "outcome": None,
    }
    assert doc["verified"] is True and doc["line"] == "tanks"
    links = {link["key"]: link for link in doc["links"]}
    assert links["data_window"]["facts"]["inputs_sha256"] == approved.inputs_sha256
    twin = approved.twin_version
    assert links["twin"]["facts"]["checkpoint_sha256"] == twin.checkpoint_sha256
    assert links["twin"]["facts"]["evaluation"]["verdict"] == "forced promotable in tests"
    [signature] = links["review"]["rows"]
    assert (signature["username"], signature["in_audit_log"], signature["still_matches"]) == ("ada", True, True)
    assert "audit_chain" in doc

    page = client.get(f"/audit/proposals/{approved.pk}/")  # a browser's Accept prefers HTML
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert 'id="decision-verified">verified<' in html and 'id="chain-status"' in html
    assert html.count('data-verified="true"') == 4 and html.count('data-verified="none"') == 2
    # read as people read: times with their zone to the second, stored structures as JSON an auditor can open
    made = timezone.localtime(approved.created_at).strftime("%Y-%m-%d %H:%M:%S")
    assert made in html and "datetime.datetime(" not in html and "a.m." not in html and "p.m." not in html
    assert '<details class="value"><summary>' in html and "&quot;verdict&quot;: &quot;forced promotable" in html


def test_a_changed_checkpoint_breaks_the_twin_link(approved: Recommendation) -> None:
    stored = bytes(TwinVersion.objects.get(pk=approved.twin_version_id).checkpoint)
    TwinVersion.objects.filter(pk=approved.twin_version_id).update(checkpoint=stored[:-1] + bytes([stored[-1] ^ 1]))
    doc = chain_json(auditor(), approved)
    twin = next(link for link in doc["links"] if link["key"] == "twin")
    assert twin["verified"] is False and "not to the registered SHA-256" in twin["check"]
    assert doc["verified"] is False


def test_a_signature_edited_in_the_database_no_longer_matches_the_audit_log(approved: Recommendation) -> None:
    Signature.objects.filter(recommendation=approved).update(content_sha256="0" * 64)
    review = next(link for link in chain_json(auditor(), approved)["links"] if link["key"] == "review")
    assert review["verified"] is False and "not the one the audit log recorded" in review["check"]
    assert review["rows"][0]["in_audit_log"] is False and review["rows"][0]["still_matches"] is False


def test_a_changed_telemetry_window_breaks_the_data_window_link(approved: Recommendation) -> None:
    Recommendation.objects.filter(pk=approved.pk).update(inputs_sha256="1" * 64)  # what the window "was"
    doc = chain_json(auditor(), approved)
    links = {link["key"]: link for link in doc["links"]}
    assert links["data_window"]["verified"] is False and "now hashes to" in links["data_window"]["check"]
    assert links["proposal"]["verified"] is False  # and the stored hash no longer matches the audit log either


def test_release_writes_are_checked_against_their_read_back_and_the_audit_log(approved: Recommendation) -> None:
    now = timezone.now()
    with transaction.atomic():
        release = Release.objects.create(
            recommendation=approved, line=approved.line, status="finished", started_at=now, steps=1, steps_done=1
        )
        write = ReleaseWrite.objects.create(
            release=release, step=0, tag="pump_flow_m3_h", node_id="ns=2;s=pump", value=1.1, claimed_at=now,
            written_at=now, read_back=1.1, read_at=now, status="verified",
        )  # fmt: skip
        audit_record(
            actor="system:release-agent",
            action="release.write",
            obj=release,
            after={"step": 0, "writes": [{"tag": write.tag, "value": 1.1, "read_back": 1.1}]},
        )
    client = auditor()
    release_link = next(link for link in chain_json(client, approved)["links"] if link["key"] == "release")
    assert release_link["verified"] is True and release_link["rows"][0]["read_back"] == 1.1

    ReleaseWrite.objects.filter(pk=write.pk).update(read_back=1.3)  # the PLC's answer, rewritten afterwards
    release_link = next(link for link in chain_json(client, approved)["links"] if link["key"] == "release")
    assert release_link["verified"] is False and "differs from what the audit log recorded" in release_link["check"]


def test_an_unknown_proposal_is_a_404_and_other_roles_are_refused(approved: Recommendation, make_user: Any) -> None:
    assert auditor().get(f"/audit/proposals/{approved.pk + 1000}/").status_code == 404
    for role in ("engineer", "data"):
        client = Client()
        client.force_login(make_user(role))
        assert client.get(f"/audit/proposals/{approved.pk}/", HTTP_ACCEPT="application/json").status_code == 403


def test_samples_stored_after_the_proposal_leave_its_data_window_verified(
    approved: Recommendation,
    ingest: Any,  # noqa: F811 -- the imported fixture
) -> None:
    """A live collector keeps storing values just after the window's newest sample: the window must not move."""
    from datetime import timedelta

    import numpy as np

    later = approved.window_end + timedelta(seconds=1)  # inside the period after the newest sample
    latest = approved.inputs["latest"]
    row = [[latest[n]["good_value"] for n in ("upper_level_m", "lower_level_m", "pump_flow_m3_h", "leak_m3_h")]]
    ingest(approved.line, np.array(row) + 0.5, start=later)
    links = {link["key"]: link for link in chain_json(auditor(), approved)["links"]}
    assert links["data_window"]["verified"] is True, links["data_window"]["check"]
