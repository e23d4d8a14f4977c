"""`bench estimation`: forecast errors from the encoder's latent beside the moving-horizon estimates', same twin."""

from __future__ import annotations

import pytest

from bench import estimation


@pytest.mark.slow  # trains one small reactor twin on a simulated day: about a minute on 2 cores
def test_the_quick_run_scores_the_encoder_the_rolled_latent_and_the_estimate_on_the_same_starts() -> None:
    out = estimation.run(quick=True)
    assert out["default"] == "16/1/2" and out["chosen"] in (None, "16/1/2")  # the quick grid is the default alone
    [line] = [key for key in out if isinstance(out[key], dict) and key != "drifted"]
    result = out[line]
    assert result["test"].keys() == {"encoder", "rolled", "mhe"}
    for scores in (*result["test"].values(), *result["val_grid"].values()):
        assert scores.keys() == {"h1", "h5", "h20"} and all(0.0 < v < 10.0 for v in scores.values())
    assert result["ms_per_estimate"]["mhe"] > 0 and result["ms_per_estimate"]["encoder"] > 0
    assert result["test_starts"] > 100
    # the same twin on a plant drifted after training and on the nominal one, from each state, with the plan's bias
    for plant in ("drifted_plant", "nominal_plant"):
        scored = out["drifted"][plant]
        assert scored["starts"] > 30
        for state in ("encoder", "mhe", "mhe_offset"):
            assert scored[state]["rms"].keys() == {"h1", "h5", "h20"}
            assert all(0.0 < v < 10.0 for v in scored[state]["rms"].values())
            assert abs(scored[state]["mean_h20"]) < 10.0
