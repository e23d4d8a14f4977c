"""The release benchmark's quick run signs and releases every proposal, survives its kill -9, and reports its figures."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow  # trains a tiny twin, starts the agent twice: about two minutes
@pytest.mark.django_db(transaction=True)  # the agent works on its own connection (in the bench's scratch database)
def test_the_release_benchmark_releases_every_signed_proposal_once_through_a_kill() -> None:
    from bench import release

    out = release.run(quick=True)
    assert out["quick"] is True and out["agent_kills"] == 1
    assert out["releases_finished"] == out["proposals"] == 6, out["releases_not_finished"]
    assert out["writes_recorded"] == 6 * 2 * 4  # proposals × steps × MVs
    assert out["writes_without_signed_approval"] == 0
    assert out["double_writes_after_agent_kill"] == 0 and out["plc_writes_match_plans"] is True
    for key in (
        "approve_to_first_write_p95_ms",
        "write_readback_p95_ms",
        "readback_only_p95_ms",
        "held_session_write_p95_ms",
        "held_session_write_readback_p95_ms",
        "fresh_connection_write_readback_p95_ms",
    ):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert out["approve_to_first_write_p50_ms"] <= out["approve_to_first_write_p95_ms"]
