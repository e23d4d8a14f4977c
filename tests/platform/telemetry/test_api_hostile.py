"""Hostile JSON and headers on the samples API: a clear 400 naming the problem, never a 500, nothing stored."""

from __future__ import annotations

import pytest
from django.test import Client

from twinops.accounts.services import token_issue

pytestmark = pytest.mark.django_db
URL = "/api/lines/reactor/samples"


@pytest.fixture
def token(make_user) -> str:
    user = make_user("data", username="historian-bridge")
    return token_issue(user=user, name="bridge", actor=user, lines=["reactor"])[1]


def _post(client: Client, body: str, token: str, **extra: str):
    return client.post(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def _sample(value: str) -> str:
    return '{"samples": [{"tag": "T", "ts": "2024-03-01T00:00:00Z", "value": ' + value + "}]}"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1e400", "number 1e400 is out of range"),
        ("-1e400", "number -1e400 is out of range"),
        ("1" * 400, "(400 characters) is out of range"),  # an integer no double holds
        ("9" * 5000, "(5000 characters) is out of range"),  # past Python's int-from-text digit limit
    ],
)
def test_a_number_no_double_can_hold_is_refused_with_400(client, line, token, sample_count, value, says) -> None:
    response = _post(client, _sample(value), token)
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert sample_count() == 0


def test_a_large_but_finite_number_is_stored_as_out_of_range(client, line, token, sample_count) -> None:
    response = _post(client, _sample("1e300"), token)
    assert response.status_code == 200 and response.json()["samples_out_of_range"] == 1


def test_deeply_nested_json_is_refused_with_400(client, line, token, sample_count) -> None:
    for body in ("[" * 100_000 + "]" * 100_000, '{"samples": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001):
        response = _post(client, body, token)
        assert response.status_code == 400
        assert response.json()["error"] == "malformed JSON: nested too deeply"
    assert sample_count() == 0


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "12 34", "½"])
def test_a_malformed_content_length_is_refused_with_400(client, line, token, sample_count, length) -> None:
    response = _post(client, _sample("1"), token, CONTENT_LENGTH=length)
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed Content-Length header")
    assert sample_count() == 0


def test_a_content_length_past_the_limit_is_refused_with_413_before_reading(
    client, line, token, settings, sample_count
) -> None:
    settings.INGEST_API_MAX_BYTES = 1000
    response = _post(client, _sample("1"), token, CONTENT_LENGTH=str(10**30))
    assert response.status_code == 413 and "limit is 1000 bytes" in response.json()["error"]
    assert sample_count() == 0
