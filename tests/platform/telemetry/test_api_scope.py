"""API tokens write only their lines; samples dated ahead of the clock are refused; only accepted data makes
partitions, and an ingest that rolls back leaves none behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import transaction
from django.test import Client

from twinops.accounts.services import token_issue
from twinops.telemetry import files, store
from twinops.telemetry.batch import RawBatch
from twinops.telemetry.services import history_import, samples_ingest

from .conftest import line_make

pytestmark = pytest.mark.django_db(transaction=True)  # partitions are made on a side connection that commits


def _token(make_user, **scope) -> str:
    user = make_user("data", username="historian-bridge")
    return token_issue(user=user, name="bridge", actor=user, **scope)[1]


def _post(client: Client, key: str, body: str, token: str, content_type: str = "application/json"):
    url = f"/api/lines/{key}/samples"
    return client.post(url, data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}")


def _json(*rows: tuple[str, datetime | str, float]) -> str:
    samples = [{"tag": t, "ts": ts if isinstance(ts, str) else ts.isoformat(), "value": v} for t, ts, v in rows]
    return json.dumps({"samples": samples})


def _partition(year: int, month: int) -> str:
    return f"telemetry_sample_p{year}_{month:02d}"


# --- scope -----------------------------------------------------------------------------------------------------
def test_a_token_for_one_line_is_refused_on_another_with_403(client, line, make_user, sample_count) -> None:
    line_make("kiln", {"T": ("CV", 0, 2000)})
    token = _token(make_user, lines=["reactor"])
    body = _json(("T", "2024-03-01T00:00:00Z", 1.0))
    response = _post(client, "kiln", body, token)
    assert response.status_code == 403
    assert response.json()["error"] == "this token may not write line 'kiln'; it may write reactor"
    assert sample_count() == 0
    assert _post(client, "reactor", body, token).status_code == 200


def test_a_site_wide_token_writes_every_line(client, line, make_user, sample_count) -> None:
    line_make("kiln", {"T": ("CV", 0, 2000)})
    token = _token(make_user, all_lines=True)
    body = _json(("T", "2024-03-01T00:00:00Z", 1.0))
    assert _post(client, "kiln", body, token).status_code == 200
    assert _post(client, "reactor", body, token).status_code == 200
    assert sample_count() == 2


def test_a_token_must_name_its_lines_or_be_site_wide(make_user) -> None:
    user = make_user("data")
    with pytest.raises(ValueError, match="name the lines the token may write"):
        token_issue(user=user, name="bridge", actor=user)
    with pytest.raises(ValueError, match="not both"):
        token_issue(user=user, name="bridge", actor=user, lines=["reactor"], all_lines=True)


# --- timestamps ahead of the clock -------------------------------------------------------------------------------
def test_a_batch_dated_ahead_of_the_clock_is_refused_with_400_naming_row_and_tag(
    client, line, make_user, sample_count
) -> None:
    token = _token(make_user, lines=["reactor"])
    now = datetime.now(UTC)
    body = _json(("T", now - timedelta(minutes=1), 1.0), ("F", now + timedelta(hours=1), 2.0))
    response = _post(client, "reactor", body, token)
    assert response.status_code == 400
    error = response.json()
    assert "1 sample(s) dated more than 300 s ahead of the server clock" in error["error"]
    assert [(p["index"], p["field"]) for p in error["problems"]] == [(2, "F")]
    assert "ahead of the server clock" in error["problems"][0]["reason"]
    assert sample_count() == 0  # the whole batch: a client fixes its clock and sends it again


def test_a_timestamp_within_the_margin_is_stored_and_the_margin_is_a_setting(
    client, line, make_user, sample_count, settings
) -> None:
    token = _token(make_user, lines=["reactor"])
    now = datetime.now(UTC)
    assert _post(client, "reactor", _json(("T", now + timedelta(seconds=60), 1.0)), token).status_code == 200
    assert _post(client, "reactor", _json(("T", now + timedelta(hours=1), 1.0)), token).status_code == 400
    settings.TWINOPS_INGEST_FUTURE_MARGIN_S = 7200
    assert _post(client, "reactor", _json(("T", now + timedelta(hours=1), 1.0)), token).status_code == 200
    assert sample_count() == 2


def test_history_and_collector_samples_dated_ahead_are_reported_and_not_stored(line, tmp_path, samples) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    path = tmp_path / "history.csv"
    path.write_text(f"timestamp,T\n2024-03-01T00:00:00Z,1\n{ahead.isoformat()},2\n")
    result = history_import(line=line, path=path, filename="history.csv", actor="system:test")
    assert result.samples_inserted == 1 and result.samples_rejected == 1
    (rejection,) = result.rejections
    assert (rejection.row, rejection.column) == (3, "T")
    assert rejection.reason.startswith(f"not stored: timestamp {ahead.isoformat()} is ")
    result = samples_ingest(
        line=line, batch=RawBatch.from_records([("F", ahead, 3.0)]), source="opcua", actor="system:collector"
    )
    assert result.samples_rejected == 1 and "ahead of the server clock" in result.rejections[0].reason
    assert [(name, value) for name, _, value, _, _ in samples(line)] == [("T", 1.0)]


# --- partitions --------------------------------------------------------------------------------------------------
def test_a_refused_far_future_batch_makes_no_partition(client, line, make_user) -> None:
    token = _token(make_user, lines=["reactor"])
    assert _partition(2199, 6) not in store.existing_partitions()
    response = _post(client, "reactor", _json(("T", "2199-06-01T00:00:00Z", 1.0)), token)
    assert response.status_code == 400
    assert _partition(2199, 6) not in store.existing_partitions()


def test_a_batch_that_rolls_back_leaves_no_new_partition(client, line, make_user, sample_count, monkeypatch) -> None:
    monkeypatch.setattr(files, "BLOCK_BYTES", 4096)  # several chunks: the first is stored before the last is read
    token = _token(make_user, lines=["reactor"])
    assert _partition(1987, 4) not in store.existing_partitions()
    rows = [f"1987-04-01T00:{i // 60:02d}:{i % 60:02d}Z,T,{i}" for i in range(600)]
    rows.append(f"{(datetime.now(UTC) + timedelta(days=1)).isoformat()},T,1")  # in the last chunk: refused
    response = _post(client, "reactor", "ts,tag,value\n" + "\n".join(rows) + "\n", token, content_type="text/csv")
    assert response.status_code == 400 and response.json()["problems"][0]["index"] == 602
    assert sample_count() == 0
    assert _partition(1987, 4) not in store.existing_partitions()


def test_a_new_partition_in_use_by_another_ingest_is_not_dropped(line) -> None:
    name = _partition(1985, 3)
    ts = np.asarray([datetime(1985, 3, 2, tzinfo=UTC).timestamp() * 1e6], np.int64)
    with pytest.raises(RuntimeError, match="rolled back"), transaction.atomic():
        assert store.partitions_ensure(ts) == [name]  # made on the side connection, locked by this transaction
        assert store.partitions_drop_empty([name]) == []  # a failed ingest's clean-up leaves it to this one
        assert name in store.existing_partitions()
        raise RuntimeError("rolled back")
    assert store.partitions_created_take() == [name]
    assert store.partitions_drop_empty([name]) == [name]  # nobody uses it now: gone
    assert name not in store.existing_partitions()


def test_partitions_of_an_ingest_whose_callers_transaction_rolled_back_go_at_the_next_ingest(
    line, sample_count
) -> None:
    name = _partition(1984, 7)
    with pytest.raises(RuntimeError, match="caller failed"), transaction.atomic():  # e.g. onboarding a line
        samples_ingest(
            line=line,
            batch=RawBatch.from_records([("T", datetime(1984, 7, 1, tzinfo=UTC), 1.0)]),
            source="t",
            actor="t",
        )
        assert name in store.existing_partitions()
        raise RuntimeError("caller failed")
    assert name in store.existing_partitions()  # the side connection committed it
    samples_ingest(
        line=line, batch=RawBatch.from_records([("T", datetime(2024, 3, 1, tzinfo=UTC), 1.0)]), source="t", actor="t"
    )
    assert name not in store.existing_partitions() and sample_count() == 1
