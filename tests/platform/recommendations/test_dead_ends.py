"""A page that says there is nothing to do says who can act and links there; it never sends a web user to the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def _page(client: Any, make_user: Callable[..., Any], role: str, url: str) -> str:
    make_user(role, username=f"{role}-1")
    assert client.login(username=f"{role}-1", password="correct-horse-battery")
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("role", ["engineer", "auditor"])
def test_without_a_promoted_twin_the_page_says_who_can_promote_and_links_to_the_twin_page(
    client: Any, make_user: Callable[..., Any], line: Any, role: str
) -> None:
    html = _page(client, make_user, role, f"/recommendations/{line.key}/")
    notice = html.split('id="no-promoted-twin"')[1].split("</p>")[0]
    assert "No promoted twin" in notice and "A data-team or admin user can promote one" in notice
    assert f'href="/twins/{line.key}/#versions-heading"' in notice
    assert "Promote a twin" not in notice  # no button for a role that cannot use it
    assert "twinops " not in html.replace("twinops_", "")  # no CLI command for a web user


@pytest.mark.parametrize("role", ["data", "admin"])
def test_a_user_who_can_promote_gets_a_button_to_the_twin_page(
    client: Any, make_user: Callable[..., Any], line: Any, role: str
) -> None:
    html = _page(client, make_user, role, f"/recommendations/{line.key}/")
    notice = html.split('id="no-promoted-twin"')[1].split("</p>")[0]
    assert f'<a class="button" href="/twins/{line.key}/#versions-heading">Promote a twin</a>' in notice
    assert "twinops " not in html.replace("twinops_", "")


def test_the_notice_goes_once_a_twin_is_promoted(
    client: Any, make_user: Callable[..., Any], line: Any, promote: Callable[..., Any]
) -> None:
    promote(line)
    html = _page(client, make_user, "engineer", f"/recommendations/{line.key}/")
    assert 'id="no-promoted-twin"' not in html


def test_the_twin_page_tells_an_engineer_who_can_promote(client: Any, make_user: Callable[..., Any], line: Any) -> None:
    html = _page(client, make_user, "engineer", f"/twins/{line.key}/")
    assert "A data-team or admin user promotes a promotable version" in html


def test_while_a_first_twin_trains_the_page_says_so_and_links_to_it(line: Any, client: Any) -> None:
    from twinops.accounts.services import user_create
    from twinops.modeling.services import training_job_create

    job = training_job_create(line=line, actor="system:test", enqueue=False)
    client.force_login(user_create(username="eng2", role="engineer", password="a-Long-password-1", actor="system:test"))
    page = client.get(f"/recommendations/{line.key}/").content.decode()
    assert f"A twin is being trained now (job {job.pk}, queued" in page and f'href="/twins/{line.key}/"' in page
