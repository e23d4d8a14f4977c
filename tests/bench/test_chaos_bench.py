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
    assert out["jobs_lost"] == 0, out["jobs_lost_by_kind"]  # no job, and no recommendation slot, lost
    for fault in FAULTS:  # each recovered: the web answers, values flow, the interrupted job or slot finished
        assert out["recovery_s"][fault] is not None, (fault, out["notes"])
    assert out["restarts_logged"] >= 7  # web, collector, beat and the workers came back through the supervisor
