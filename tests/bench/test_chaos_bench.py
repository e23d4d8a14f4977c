"""The chaos suite's quick run: each part of a running demo killed with -9 in turn, nothing lost, stuck or doubled."""

from __future__ import annotations

import pytest

FAULTS = (
    "web",
    "collector",
    "beat",
    "worker_mid_import",
    "worker_mid_training",
    "worker_mid_recommendation",
    "postgres",
    "redis",
)


@pytest.mark.slow  # runs a whole demo of its own and kills eight parts of it: about four minutes on two cores
def test_every_value_published_while_collected_is_stored_once_and_every_job_completes_through_each_kill() -> None:
    from bench import chaos

    out = chaos.run(quick=True)
    assert out["values_published"] > 1000  # both lines, live, over the whole run
    assert out["values_lost"] == 0 and out["values_stored"] == out["values_published"]
    assert out["duplicates"] == 0
    assert set(out["recovery_s"]) == set(FAULTS) and out["faults_not_injected"] == []
    lost = out["jobs_lost_by_kind"]
    assert lost["training"] == 0 and lost["import"] == 0, lost
    for fault in FAULTS:  # each recovered: the web answers, values flow, the interrupted job finished
        if fault != "worker_mid_recommendation":
            assert out["recovery_s"][fault] is not None, (fault, out["notes"])
    assert out["restarts_logged"] >= 7  # web, collector, beat and the workers came back through the supervisor
    if lost["recommendation_slots"] or out["recovery_s"]["worker_mid_recommendation"] is None:
        pytest.xfail(  # everything else held; this one is a known bug, reported on issue 11 point 10
            "a worker killed mid-recommendation loses that slot: its message stays unacknowledged in Redis for the "
            "visibility timeout (hours), beat asks again only in the next slot, and the slot's attempt row is left "
            f"without a recommendation or a reason ({out['notes']})"
        )
    assert out["jobs_lost"] == 0
