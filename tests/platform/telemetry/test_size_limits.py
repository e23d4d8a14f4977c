"""Decompression bombs and oversized bodies: refused before anything is stored, with memory bounded."""

from __future__ import annotations

import gzip
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.test import Client

from twinops.accounts.services import token_issue
from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.services import history_import_enqueue, history_import_job_run

pytestmark = pytest.mark.django_db(transaction=True)  # import jobs claim their work on their own connection
URL = "/api/lines/reactor/samples"
ROW = b"2024-03-01T00:00:00Z,T,1.5\n"
MEMBER_ROWS = (64 << 20) // len(ROW)  # rows in one gzip member: 64 MiB once decompressed


@pytest.fixture
def token(make_user) -> str:
    user = make_user("data", username="historian-bridge")
    return token_issue(user=user, name="bridge", actor=user, lines=["reactor"])[1]


def _bomb(expanded_bytes: int) -> tuple[bytes, int]:
    """Return a gzip'd long CSV (header, then one row repeated) that expands past `expanded_bytes`, and its size
    once decompressed.

    Built from one compressed 64 MiB member repeated (gzip readers read concatenated members as one stream), so
    the test never holds the expanded text.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    member = packer.compress(ROW * MEMBER_ROWS) + packer.flush()
    member_expands = len(gzip.decompress(member))
    count = expanded_bytes // member_expands + 1
    header = b"ts,tag,value\n"
    return gzip.compress(header) + member * count, len(header) + member_expands * count


def _peak_rss_reset() -> int:
    """Reset this process's peak resident size to its current size (Linux) and return that size in bytes."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def _post(client: Client, body: bytes, token: str, content_type: str = "text/csv"):
    return client.post(URL, data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_gzip_bomb_past_4_gib_is_refused_with_413_in_bounded_memory(
    client, line, token, sample_count, settings
) -> None:
    body, expanded = _bomb(4 << 30)  # about 10 MiB of gzip'd CSV rows (a real CSV compresses ~400:1 at best)
    assert expanded > 4 << 30
    settings.INGEST_API_MAX_BYTES = 16 << 20  # inside the compressed-size limit: only the expanded size can stop it
    assert len(body) < settings.INGEST_API_MAX_BYTES
    start = _peak_rss_reset()
    response = _post(client, body, token)
    growth = _status_bytes("VmHWM") - start
    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert "(the limit, TWINOPS_INGEST_API_MAX_" in response.json()["error"]  # rows or bytes: whichever comes first
    assert growth < 300 << 20, f"peak RSS grew by {growth >> 20} MiB"
    assert sample_count() == 0


def test_a_body_with_more_rows_than_the_limit_is_refused_with_413(client, line, token, sample_count, settings) -> None:
    settings.TWINOPS_INGEST_API_MAX_ROWS = 100
    csv_body = b"ts,tag,value\n" + b"".join(
        f"2024-03-01T00:{i // 60:02d}:{i % 60:02d}Z,T,1\n".encode() for i in range(101)
    )
    response = _post(client, gzip.compress(csv_body), token)
    assert response.status_code == 413 and "more than 100 rows" in response.json()["error"]
    samples = [{"tag": "T", "ts": f"2024-03-01T00:{i // 60:02d}:{i % 60:02d}Z", "value": 1} for i in range(101)]
    response = client.post(
        URL, data={"samples": samples}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 413 and "more than 100 samples" in response.json()["error"]
    assert sample_count() == 0
    assert _post(client, gzip.compress(csv_body[: -len(ROW)]), token).status_code == 200  # 100 rows: fine


def test_a_truncated_gzip_body_is_refused_with_400(client, line, token, sample_count) -> None:
    body = gzip.compress(b"ts,tag,value\n" + ROW * 1000)
    response = _post(client, body[: len(body) // 2], token)
    assert response.status_code == 400 and "truncated" in response.json()["error"]
    assert sample_count() == 0


def test_a_line_too_long_for_a_csv_row_is_refused_with_400(client, line, token, sample_count) -> None:
    body = gzip.compress(b"ts,tag,value\n" + b"2024-03-01T00:00:00Z,T," + b"9" * (2 << 20) + b"\n")
    response = _post(client, body, token)
    assert response.status_code == 400 and "line 2 is longer than" in response.json()["error"]
    assert sample_count() == 0


def test_a_history_upload_that_expands_past_the_limit_fails_its_job_and_stores_nothing(
    line, tmp_path, sample_count, settings
) -> None:
    settings.TWINOPS_HISTORY_MAX_EXPANDED_BYTES = 32 << 20
    path = tmp_path / "history.csv.gz"
    path.write_bytes(_bomb(1 << 30)[0])
    job = history_import_enqueue(line=line, path=path, filename="history.csv.gz", actor="system:test")
    assert history_import_job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == HistoryImportJob.Status.FAILED
    assert "too large" in job.error and "TWINOPS_HISTORY_MAX_EXPANDED_BYTES" in job.error
    assert sample_count() == 0


def test_a_parquet_history_file_with_more_rows_than_the_limit_fails_its_job(
    line, tmp_path, sample_count, settings
) -> None:
    settings.TWINOPS_HISTORY_MAX_ROWS = 10
    path = tmp_path / "history.parquet"
    ts = pa.array([f"2024-03-01T00:00:{i:02d}Z" for i in range(11)])
    pq.write_table(pa.table({"timestamp": ts, "T": pa.array([1.0] * 11)}), path)
    job = history_import_enqueue(line=line, path=path, filename="history.parquet", actor="system:test")
    assert history_import_job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert "more than 10 rows" in job.error and "TWINOPS_HISTORY_MAX_ROWS" in job.error
    assert sample_count() == 0
