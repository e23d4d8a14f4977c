"""The audit benchmark's quick run: every figure beside its baseline, and every tamper trial detected and named."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow  # loads 50k events into a scratch database and runs 140 tamper trials: a minute or two
@pytest.mark.django_db(transaction=True)  # the bench works in scratch databases of its own, on its own connections
def test_the_audit_benchmark_detects_every_tamper_and_reports_each_figure_beside_its_baseline() -> None:
    from bench import audit

    out = audit.run(quick=True)
    assert out["events_in_table"] >= 50_000
    assert out["tamper_trials"] > 0 and out["tamper_detected"] == out["tamper_trials"]
    assert out["tamper_first_bad_named"] == out["tamper_trials"]
    assert out["append_events_per_s"] == out["append_events_per_s_runs"][0]  # quick: one run
    for key in (
        "append_events_per_s",
        "append_events_per_s_1_writer",
        "append_events_per_s_flush_only",
        "verify_events_per_s",
        "verify_events_per_s_sql_hash_and_link_only",
        "log_page_p95_ms",
        "log_page_p95_ms_offset",
        "export_seconds_per_100k_events",
        "export_seconds_per_100k_events_copy",
    ):
        assert math.isfinite(out[key]) and out[key] > 0, key
