"""Every page and API endpoint refuses anonymous visitors; the only exceptions are the login page and the health check."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

PUBLIC = {"login", "health"}


def _patterns(resolvers: list, prefix: str = "") -> list[tuple[str, str]]:
    found = []
    for p in resolvers:
        if isinstance(p, URLResolver):
            found += _patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            found.append((p.name or "", prefix + str(p.pattern)))
    return found


def _concrete(route: str) -> str:
    """Fill path converters with plausible values (<int:id> -> 1, <str:key>/<slug:key> -> some-line)."""
    route = re.sub(r"<int:[^>]+>", "1", route)
    route = re.sub(r"<[^>]+>", "some-line", route)
    return "/" + route.lstrip("^").rstrip("$")


ROUTES = [(name, _concrete(route)) for name, route in _patterns(get_resolver().url_patterns)]


def test_the_walk_finds_the_pages_of_every_app() -> None:
    names = {name for name, _ in ROUTES}
    assert {"line-list", "login", "twin-page", "recommendation-page"} <= names
    assert len(ROUTES) > 15


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "url"), [r for r in ROUTES if r[0] not in PUBLIC])
def test_an_anonymous_request_is_refused(client: Client, name: str, url: str) -> None:
    for method in (client.get, client.post):
        response = method(url)
        if url.startswith("/api/") and "rejections" not in url:  # machine clients: a token is needed
            allowed = {401} if method == client.post else {401, 405}  # 405: a POST-only endpoint, nothing served
            assert response.status_code in allowed, (name, url, response.status_code)
        else:
            assert response.status_code == 302, (name, url, response.status_code)
            assert response["Location"].startswith("/login/"), (name, url)
