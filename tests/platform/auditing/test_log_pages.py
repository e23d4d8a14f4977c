"""The auditor's log: filters, keyset paging, one event's before → after, the chain's status, and who may see it."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_anchor, audit_chain_verify, audit_record

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def as_role(make_user: Callable[..., Any]) -> Callable[[str], Client]:
    """Return a test client logged in as a new user of the role."""

    def login(role: str) -> Client:
        client = Client()
        client.force_login(make_user(role, username=f"{role}-pages"))
        return client

    return login


def record(action: str, *, at: datetime, actor: str = "system:test", line: str = "", **kw: Any) -> AuditEvent:
    with transaction.atomic():
        return audit_record(actor=actor, action=action, at=at, line=line, **kw)


def shown(response: Any) -> list[int]:
    """Return the event numbers the log page lists, top to bottom."""
    return [int(n) for n in re.findall(r'<tr data-event="(\d+)">', response.content.decode())]


def superuser_sql(sql: str, params: list[Any]) -> None:
    """Run SQL as an attacker with full database access (user triggers off)."""
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        try:
            cur.execute(sql, params)
        finally:
            cur.execute("SET session_replication_role = origin")


def test_the_log_filters_by_line_time_actor_action_and_object(as_role: Any, anchor_files: Any) -> None:
    a = record("line.mode_changed", at=T0, line="east", object_type="lines.line", object_id="1")
    b = record(
        "proposal.approved", at=T0 + timedelta(hours=1), actor="ada", line="east", object_type="x", object_id="7"
    )
    c = record(
        "proposal.approved", at=T0 + timedelta(hours=2), actor="bob", line="west", object_type="x", object_id="8"
    )
    d = record("user.created", at=T0 + timedelta(hours=3), object_type="auth.user", object_id="3")
    client = as_role("auditor")
    everything = shown(client.get("/audit/"))
    assert everything[1:] == [d.id, c.id, b.id, a.id]
    assert AuditEvent.objects.get(id=everything[0]).action == "user.logged_in"  # the auditor's own login, newest
    assert shown(client.get("/audit/", {"line": "east"})) == [b.id, a.id]
    assert shown(client.get("/audit/", {"actor": "bob"})) == [c.id]
    assert shown(client.get("/audit/", {"action": "proposal.approved"})) == [c.id, b.id]
    assert shown(client.get("/audit/", {"object": "x:7"})) == [b.id]
    assert shown(client.get("/audit/", {"object": "x"})) == [c.id, b.id]
    window = {"from": "2026-03-01T08:30", "to": "2026-03-01T10:30"}  # the page's zone is UTC in tests
    assert shown(client.get("/audit/", window)) == [c.id, b.id]
    assert shown(client.get("/audit/", window | {"line": "west", "action": "proposal.approved"})) == [c.id]
    assert b"No event matches" in client.get("/audit/", {"actor": "nobody"}).content


def test_a_malformed_time_is_refused_naming_the_field(as_role: Any, anchor_files: Any) -> None:
    response = as_role("auditor").get("/audit/", {"from": "yesterday"})
    assert response.status_code == 400
    assert "The &#x27;from&#x27; time &#x27;yesterday&#x27; is not a date and time" in response.content.decode()


def test_paging_by_event_number_walks_every_event_once_newest_first(as_role: Any, anchor_files: Any) -> None:
    with transaction.atomic():
        made = [audit_record(actor="system:test", action="test.paged", at=T0, object_id=str(i)).id for i in range(123)]
    client = as_role("auditor")
    seen, pages, url = [], [], "/audit/?action=test.paged"
    while url:
        response = client.get(url)
        pages.append(shown(response))
        seen += pages[-1]
        older = re.search(r'href="\?([^"]*before=\d+)" rel="next"', response.content.decode())
        url = "/audit/?" + older.group(1).replace("&amp;", "&") if older else ""
    assert [len(p) for p in pages] == [50, 50, 23]
    assert seen == sorted(made, reverse=True)
    # "Newer" from the last page leads back to the middle page, still filtered
    last = client.get(f"/audit/?action=test.paged&before={pages[1][-1]}").content.decode()
    newer = re.search(r'href="\?([^"]*after=\d+)" rel="prev"', last).group(1).replace("&amp;", "&")
    assert shown(client.get("/audit/?" + newer)) == pages[1]


def test_an_event_page_shows_its_before_and_after_field_by_field(as_role: Any, anchor_files: Any) -> None:
    event = record(
        "line.mode_changed",
        at=T0,
        line="east",
        object_type="lines.line",
        object_id="1",
        reason="commissioning done",
        before={"mode": "shadow", "limits": {"high": 8.0}, "dropped": 1},
        after={"mode": "advisory", "limits": {"high": 8.0}, "added": "ü"},
    )
    page = as_role("auditor").get(f"/audit/events/{event.id}/").content.decode()
    rows = dict(re.findall(r'<tr data-field="([^"]+)" data-change="(\w+)">', page))
    assert rows == {"added": "added", "dropped": "removed", "limits.high": "same", "mode": "changed"}
    assert "<code>shadow</code>" in page and "<code>advisory</code>" in page
    assert "commissioning done" in page and event.sha256 in page
    assert as_role("admin").get(f"/audit/events/{event.id + 1000}/").status_code == 404


def test_every_auditor_page_says_how_far_the_chain_is_verified_and_anchored(
    as_role: Any, anchor_files: Any, database_superuser: str
) -> None:
    client = as_role("auditor")  # logging in is an event too: before the ones this test follows
    first = record("test.one", at=T0)
    anchored = record("test.two", at=T0 + timedelta(minutes=1))
    signed = audit_anchor(now=T0 + timedelta(minutes=2))
    newest = record("test.three", at=T0 + timedelta(minutes=3))
    for url in ("/audit/", f"/audit/events/{first.id}/"):
        status = re.search(r'<p [^>]*id="chain-status"[^>]*>([^<]*)</p>', client.get(url).content.decode()).group(1)
        assert f"Verified through event {newest.id} at 2026-03-01 08:03:00" in status
        assert f"anchored at 2026-03-01 08:02:00 UTC (event {anchored.id})" in status
        assert signed is not None

    # A database superuser deletes the newest event and edits the anchored one: the banner says so, naming it.
    superuser_sql("DELETE FROM audit_auditevent WHERE id = %s", [newest.id])
    superuser_sql("UPDATE audit_auditevent SET sha256 = %s WHERE id = %s", ["f" * 64, anchored.id])
    page = client.get("/audit/").content.decode()
    assert 'data-ok="false"' in page
    assert f"does NOT verify at event {anchored.id}" in page and "differs from the one signed" in page


def test_an_edit_after_the_anchor_shows_as_not_verified(
    as_role: Any, anchor_files: Any, database_superuser: str
) -> None:
    client = as_role("admin")
    record("test.one", at=T0)
    audit_anchor(now=T0 + timedelta(minutes=1))
    later = record("test.two", at=T0 + timedelta(minutes=2), after={"value": 1})
    superuser_sql("UPDATE audit_auditevent SET reason = 'edited' WHERE id = %s", [later.id])
    page = client.get("/audit/").content.decode()
    assert f"does NOT verify at event {later.id}" in page


def test_the_line_an_event_concerns_is_hashed(anchor_files: Any, database_superuser: str) -> None:
    event = record("line.mode_changed", at=T0, line="east")
    assert '"line":"east"' in event.canonical
    superuser_sql("UPDATE audit_auditevent SET line_key = 'west' WHERE id = %s", [event.id])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_id) == (False, event.id)
    assert "the stored line differs" in check.problem


@pytest.mark.parametrize("role", ["engineer", "data"])
def test_engineers_and_the_data_team_cannot_see_the_audit_pages(as_role: Any, anchor_files: Any, role: str) -> None:
    event = record("test.one", at=T0)
    client = as_role(role)
    for url in ("/audit/", f"/audit/events/{event.id}/", "/audit/proposals/1/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/audit/export/", {}).status_code == 403
    assert b"Audit log" not in client.get("/").content  # no link to it either


def test_auditors_and_admins_see_the_link_and_anonymous_visitors_are_sent_to_log_in(
    as_role: Any, anchor_files: Any
) -> None:
    assert b'href="/audit/"' in as_role("auditor").get("/").content
    assert b'href="/audit/"' in as_role("admin").get("/").content
    response = Client().get("/audit/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_an_auditor_downloads_an_export_of_the_range_and_the_download_is_audited(
    as_role: Any, anchor_files: Any
) -> None:
    client = as_role("auditor")
    record("line.mode_changed", at=T0, line="east")
    response = client.post("/audit/export/", {"from": "2026-03-01T07:00", "to": "", "line": "east"})
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].startswith('attachment; filename="twinops-audit-')
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert {"manifest.json", "events.jsonl", "anchors.jsonl", "decisions.csv", "report.html", "verify.py"} <= set(
        bundle.namelist()
    )
    exported = AuditEvent.objects.get(action="audit.exported")
    assert (exported.actor_label, exported.line_key) == ("auditor-pages", "east")
    assert client.post("/audit/export/", {"from": "soon"}).status_code == 400
