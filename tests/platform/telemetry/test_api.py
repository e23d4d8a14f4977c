"""The HTTP batch API: token auth, size limit, type checks, JSON and CSV batches; nothing partly stored on errors."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from twinops.accounts.services import token_issue

pytestmark = pytest.mark.django_db
URL = "/api/lines/reactor/samples"


@pytest.fixture
def token(make_user) -> str:
    user = make_user("data", username="historian-bridge")
    return token_issue(user=user, name="bridge", actor=user, lines=["reactor"])[1]


def _post(client: Client, body: bytes | str, *, token: str | None, content_type: str = "application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(URL, data=body, content_type=content_type, **headers)


def _json(samples: list[dict]) -> str:
    return json.dumps({"samples": samples})


def test_a_valid_json_batch_is_stored_and_the_counts_come_back(client, line, token, samples) -> None:
    body = _json(
        [
            {"tag": "T", "ts": "2024-03-01T00:00:00Z", "value": 70.5},
            {"tag": "F", "ts": "2024-03-01T01:00:00+01:00", "value": "Scan Timeout"},
            {"tag": "T_in", "ts": "2024-03-01T00:00:00Z", "value": None},
            {"tag": "nope", "ts": "2024-03-01T00:00:00Z", "value": 1},
        ]
    )
    response = _post(client, body, token=token)
    assert response.status_code == 200
    result = response.json()
    assert (result["samples_inserted"], result["samples_bad_quality"], result["samples_rejected"]) == (3, 2, 1)
    assert {
        "row": 4,
        "column": "nope",
        "reason": "not stored: unknown tag 'nope' (not a tag of line 'reactor')",
    } in result["rejections"]
    assert [(n, v, r) for n, _, v, _, r in samples(line)] == [
        ("F", None, "Scan Timeout"),
        ("T", 70.5, None),
        ("T_in", None, "no value"),
    ]
    assert _post(client, body, token=token).json()["samples_inserted"] == 0  # a replay adds nothing


def test_a_valid_csv_batch_is_stored(client, line, token, samples) -> None:
    body = "ts,tag,value\n2024-03-01T00:00:00Z,T,1\n2024-03-01T00:00:01Z,T,2\n2024-03-01T00:00:00Z,F,Bad\n"
    response = _post(client, body, token=token, content_type="text/csv")
    assert response.status_code == 200 and response.json()["samples_inserted"] == 3
    assert [(n, v) for n, _, v, _, _ in samples(line)] == [("F", None), ("T", 1.0), ("T", 2.0)]


def test_a_batch_over_the_size_limit_is_refused_with_413_and_nothing_stored(
    client, line, token, settings, sample_count
) -> None:
    settings.INGEST_API_MAX_BYTES = 1000
    body = _json([{"tag": "T", "ts": f"2024-03-01T00:00:{i:02d}Z", "value": i} for i in range(40)])
    response = _post(client, body, token=token)
    assert response.status_code == 413 and "limit is 1000 bytes" in response.json()["error"]
    assert sample_count() == 0


def test_an_unauthenticated_batch_is_refused_with_401(client, line, sample_count) -> None:
    body = _json([{"tag": "T", "ts": "2024-03-01T00:00:00Z", "value": 1}])
    assert _post(client, body, token=None).status_code == 401
    assert _post(client, body, token="twk_abcd_wrong").status_code == 401
    assert sample_count() == 0


def test_a_user_without_the_import_capability_is_refused_with_403(client, line, make_user, sample_count) -> None:
    engineer = make_user("engineer")
    plaintext = token_issue(user=engineer, name="t", actor=engineer, all_lines=True)[1]
    body = _json([{"tag": "T", "ts": "2024-03-01T00:00:00Z", "value": 1}])
    assert _post(client, body, token=plaintext).status_code == 403
    assert sample_count() == 0


def test_wrong_types_are_refused_with_400_naming_index_and_field_and_nothing_stored(
    client, line, token, sample_count
) -> None:
    body = _json(
        [
            {"tag": "T", "ts": "2024-03-01T00:00:00Z", "value": 1},
            {"tag": 5, "ts": "2024-03-01T00:00:01Z", "value": 1},
            {"tag": "T", "ts": "2024-03-01T00:00:02Z", "value": [1]},
            {"tag": "T", "ts": "yesterday", "value": 1},
        ]
    )
    response = _post(client, body, token=token)
    assert response.status_code == 400
    assert [(p["index"], p["field"]) for p in response.json()["problems"]] == [(2, "tag"), (3, "value")]
    response = _post(client, _json([{"tag": "T", "ts": "yesterday", "value": 1}]), token=token)
    assert response.status_code == 400 and response.json()["problems"][0]["field"] == "ts"
    assert _post(client, "{not json", token=token).status_code == 400
    assert sample_count() == 0


def test_a_csv_batch_with_a_wrong_header_is_refused_with_400(client, line, token, sample_count) -> None:
    response = _post(client, "ts,sensor,reading\n2024-03-01T00:00:00Z,T,1\n", token=token, content_type="text/csv")
    assert response.status_code == 400
    assert {p["field"] for p in response.json()["problems"]} == {"sensor", "reading"}
    assert sample_count() == 0
