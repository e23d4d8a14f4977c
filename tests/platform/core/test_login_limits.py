"""The login rate limit: one count per person however the name is spelled, exact under parallel guesses, the real
client behind a trusted proxy (and only then), and a clear refusal when its store is down."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory, override_settings

from twinops.config.env import parse_networks
from twinops.core.clients import client_address

RIGHT, WRONG = "correct-horse-battery", "wrong"


@pytest.fixture(autouse=True)
def _empty_counts() -> Iterator[None]:
    cache.clear()  # the counts live in Redis, which outlives test transactions
    yield
    cache.clear()


def _login(client: Client, username: str, password: str, **headers: str) -> int:
    return client.post("/login/", {"username": username, "password": password}, **headers).status_code


@pytest.mark.django_db
def test_nfkc_and_case_variants_of_a_name_share_its_count(client: Client, make_user, settings) -> None:
    make_user("admin", username="admin")
    spellings = ["admin", "ａｄｍｉｎ", "ADMIN", "Ａｄｍｉｎ", "ａdmｉn"]  # fullwidth letters are NFKC-equal to ASCII
    for name in spellings[: settings.LOGIN_RATE_LIMIT]:
        assert _login(client, name, WRONG) == 200  # the form again: wrong password
    for name in spellings:  # locked under every spelling, the right password included
        assert _login(client, name, RIGHT) == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db(transaction=True)  # each thread has its own database connection
def test_parallel_guesses_never_check_more_passwords_than_the_limit(make_user, settings) -> None:
    make_user("engineer", username="target")
    guesses = 4 * settings.LOGIN_RATE_LIMIT
    start = threading.Barrier(guesses)
    statuses: list[int] = []

    def guess() -> None:
        from django.db import connection

        client = Client()
        start.wait()  # all at once: a read-check-increment limit lets every one of them through
        try:
            statuses.append(_login(client, "target", WRONG))
        finally:
            connection.close()

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * settings.LOGIN_RATE_LIMIT + [429] * (guesses - settings.LOGIN_RATE_LIMIT)


@pytest.mark.django_db
def test_without_a_trusted_proxy_a_forwarded_address_is_ignored(client: Client, make_user, settings) -> None:
    make_user("engineer", username="erin")
    for n in range(settings.LOGIN_RATE_LIMIT):  # an attacker inventing a new address for every guess
        assert _login(client, "erin", WRONG, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}") == 200
    assert _login(client, "erin", RIGHT, HTTP_X_FORWARDED_FOR="198.51.100.99") == 429


@pytest.mark.django_db
def test_behind_a_trusted_proxy_one_client_cannot_lock_out_another(make_user, settings) -> None:
    settings.TRUSTED_PROXIES = parse_networks("TWINOPS_TRUSTED_PROXIES", "10.0.0.1")
    make_user("engineer", username="erin")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    attacker, engineer = Client(**proxy), Client(**proxy)
    for _ in range(settings.LOGIN_RATE_LIMIT):
        assert _login(attacker, "erin", WRONG, HTTP_X_FORWARDED_FOR="203.0.113.66") == 200
    # Spoofing the header does not help: the proxy appends the address it really heard from.
    assert _login(attacker, "erin", RIGHT, HTTP_X_FORWARDED_FOR="203.0.113.7, 203.0.113.66") == 429
    assert _login(engineer, "erin", RIGHT, HTTP_X_FORWARDED_FOR="203.0.113.7") == 302  # signed in
    assert "_auth_user_id" in engineer.session


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy(settings) -> None:
    settings.TRUSTED_PROXIES = parse_networks("TWINOPS_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8")

    def address(remote: str, forwarded: str | None) -> str:
        extra = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
        return client_address(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))

    assert address("10.0.0.1", "6.6.6.6, 203.0.113.5, 10.0.0.2") == "203.0.113.5"  # two proxies deep
    assert address("fd00::1", "2001:db8::7") == "2001:db8::7"
    assert address("192.0.2.1", "203.0.113.5") == "192.0.2.1"  # not from a proxy: the header is the client's
    assert address("10.0.0.1", None) == "10.0.0.1"  # the proxy's own request
    assert address("10.0.0.1", "203.0.113.5, not-an-address") == "10.0.0.1"  # a broken hop is not a client's pick
    settings.TRUSTED_PROXIES = ()
    assert address("10.0.0.1", "203.0.113.5") == "10.0.0.1"


def test_a_malformed_trusted_proxy_setting_names_the_variable() -> None:
    assert parse_networks("TWINOPS_TRUSTED_PROXIES", " 10.0.0.5 ,10.1.0.0/16,") == ("10.0.0.5/32", "10.1.0.0/16")
    with pytest.raises(ImproperlyConfigured, match="TWINOPS_TRUSTED_PROXIES .*'proxy.local' is neither"):
        parse_networks("TWINOPS_TRUSTED_PROXIES", "10.0.0.5,proxy.local")


@pytest.mark.django_db
def test_with_the_store_down_sign_in_is_refused_with_503_and_says_why(client: Client, make_user) -> None:
    make_user("engineer", username="erin")
    closed_port = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1"}
    }
    with override_settings(CACHES=closed_port):
        assert client.get("/login/").status_code == 200
        response = client.post("/login/", {"username": "erin", "password": RIGHT})
    assert response.status_code == 503
    assert "sign-in is unavailable: the rate limiter&#x27;s store is down; try again shortly" in (
        response.content.decode().lower()
    )
    assert "_auth_user_id" not in client.session  # no guess goes uncounted, the right one neither
    assert _login(client, "erin", RIGHT) == 302  # the store is back: sign-in works again
