"""`bench twin`: tanks hyper-parameters chosen on validation only, figures over several seeds, the JEPA ablation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench import twin

TINY = dataclasses.replace(twin.TANKS, **{**twin.QUICK, "epochs": 1, "steps_per_epoch": 5})
TANKS_CSV = twin.shared_data() / "cascaded_tanks" / "dataBenchmark.csv"


@pytest.mark.skipif(not TANKS_CSV.is_file(), reason=f"shared data set not found at {TANKS_CSV}")  # as the others
def test_the_tanks_validation_score_never_reads_the_test_record(tmp_path, monkeypatch) -> None:
    honest = twin.cascaded_tanks_validation(TINY)
    honest.pop("train_seconds")
    # A copy of the record whose test columns (u_val, y_val) are garbage: the validation score must not move.
    raw = np.genfromtxt(TANKS_CSV, delimiter=",", skip_header=1)
    raw[:, [1, 3]] = np.random.default_rng(0).uniform(-50.0, 50.0, (len(raw), 2))
    (tmp_path / "cascaded_tanks").mkdir()
    np.savetxt(tmp_path / "cascaded_tanks" / "dataBenchmark.csv", raw, delimiter=",", header="uEst,uVal,yEst,yVal")
    monkeypatch.setenv("TWINOPS_SHARED_DATA", str(tmp_path))
    garbled = twin.cascaded_tanks_validation(TINY)
    assert {k: garbled[k] for k in honest} == honest
    assert twin.cascaded_tanks(TINY)["rmse"] > 10.0  # while the test score does see the garbage


def test_tuning_seeds_that_are_also_reported_are_refused() -> None:
    with pytest.raises(ValueError, match=r"tuning seeds \[3\] are also reported seeds"):
        twin.seeded(seeds=(1, 2, 3), tuning_seeds=(3, 101))


@pytest.mark.slow  # trains 10 tiny twins in a process pool: about a minute on 2 cores
@pytest.mark.skipif(not TANKS_CSV.is_file(), reason=f"shared data set not found at {TANKS_CSV}")
def test_the_quick_benchmark_reports_each_seed_the_ablation_and_the_published_figures() -> None:
    out = twin.run(quick=True, faults=False, jobs=2)
    assert out["seeds"] == [1, 2]
    for key in ("cascaded_tanks_freerun_rmse", "daisy_cstr_freerun_nrmse", "daisy_cstr_nrmse_h20"):
        for variant in ("", "_no_jepa"):
            per_seed = out[f"{key}{variant}_per_seed"]
            assert list(per_seed) == ["1", "2"]
            assert out[f"{key}{variant}_mean"] == pytest.approx(np.mean(list(per_seed.values())))
            assert out[f"{key}{variant}_sd"] == pytest.approx(np.std(list(per_seed.values()), ddof=1))
            assert all(math.isfinite(v) and v > 0 for v in per_seed.values())
    validation = out["cascaded_tanks_validation"]
    assert validation["fit_rows"] + validation["validation_rows"] == 1024
    assert validation["tuning_seeds"] == [101]
    means = [c["rmse_mean"] for c in validation["grid"]]
    assert validation["chosen"]["change"] == validation["grid"][int(np.argmin(means))]["change"]
    assert out["cascaded_tanks_published_rmse"] == {"linear": 0.757, "pnlss": 0.450, "best_published": 0.343}
    assert "published: linear 0.757, PNLSS 0.45, best 0.343" in out["cascaded_tanks_summary"]
