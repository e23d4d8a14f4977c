"""`bench calibration`: the demo twins' test coverage with the current interval floor beside the candidate's."""

from __future__ import annotations

import pytest

from bench import calibration


@pytest.mark.slow  # trains one small heat-train twin on a simulated day: about a minute on 2 cores
def test_the_quick_run_scores_the_current_floor_and_the_candidate_on_the_same_twin() -> None:
    out = calibration.run(quick=True)
    assert out["floor_share"] == 1.0 and out["candidate_floor_share"] == calibration.CANDIDATE_FLOOR_SHARE
    [line] = [key for key in out if isinstance(out[key], dict)]
    current, candidate = out[line]["current"], out[line]["candidate"]
    for result in (current, candidate):
        shares = [v for per_cv in result["coverage"].values() for v in per_cv.values()]
        assert shares and all(0.0 <= v <= 1.0 for v in shares)
        assert result["min"] == pytest.approx(min(shares), abs=1e-3)
        assert 0.0 <= result["val_halves_mean_abs_dev"] <= 1.0
        assert isinstance(result["gate_passes"], bool)
    assert current["coverage"].keys() == candidate["coverage"].keys()  # the same horizons and CVs, side by side
    adaptive = out[line]["adaptive"]  # the band widened by recent errors, beside the same band unwidened
    assert adaptive["plain"]["coverage"].keys() == adaptive["adaptive"]["coverage"].keys()
    assert adaptive["width_ratio"] >= 1.0  # the scale only widens (clipped at 1 from below)
    assert adaptive["adaptive"]["mean"] >= adaptive["plain"]["mean"]  # wider bands cover at least as often
    assert adaptive["val_halves"].keys() == {"plain_mean_abs_dev", "adaptive_mean_abs_dev", "width_ratio"}
