"""The promotion gate: free run against ARX, gain signs against the data's steps, calibrated coverage, each named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from twins import Persistence, Record, TrainingOutcome, TwinDataset, evaluate, fit_linear, train_and_evaluate
from twins.gains import step_events
from twins.twin import Twin

from .conftest import TINY


def stepped_line(rows: int = 3000, seed: int = 0) -> TwinDataset:
    """Simulate a heater: outlet rises with fuel (concave), stack O2 falls with it; fuel held 60-150 samples a step."""
    rng = np.random.default_rng(seed)
    fuel, t = np.empty(rows), 0
    while t < rows:
        hold = int(rng.integers(60, 150))
        fuel[t : t + hold] = rng.uniform(0.0, 2.0)
        t += hold
    x = np.zeros((rows, 2))
    for k in range(rows - 1):
        x[k + 1] = x[k] + 0.2 * (np.array([2.0 * np.sqrt(fuel[k]), -0.5 * fuel[k] ** 2]) - x[k])
    cv = x + rng.normal(0.0, 0.02, x.shape)
    return TwinDataset.from_arrays(
        cv=cv,
        mv=fuel,
        cv_names=["outlet_degc", "stack_o2_pct"],
        mv_names=["fuel_kw"],
        sample_period_s=10.0,
    )


@pytest.fixture(scope="module")
def heater() -> TrainingOutcome:
    """Train one tiny twin of the stepped heater (about half a minute on one core)."""
    return train_and_evaluate(stepped_line(), dataclasses.replace(TINY, horizon=20))


def _reevaluate(outcome: TrainingOutcome, twin: Twin) -> dict:
    rec = Record.build(outcome.split, twin.norm)
    return evaluate(twin, outcome.split, [Persistence(), fit_linear(rec, outcome.split)], rec).to_dict()


def _checks(report: dict) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in report["checks"]}


def test_the_data_shows_the_heaters_gain_signs_and_the_twin_agrees(heater: TrainingOutcome) -> None:
    assert len(step_events(heater.split.dataset, 20)) >= 10
    report = heater.report.to_dict()
    signs = {(g["mv"], g["cv"]): (g["data_sign"], g["twin_sign"]) for g in report["gain_signs"]}
    assert signs == {("fuel_kw", "outlet_degc"): (1, 1), ("fuel_kw", "stack_o2_pct"): (-1, -1)}
    assert _checks(report) == {"free_run": True, "gain_signs": True, "coverage": True}
    assert report["promotable"] and report["reason"].startswith("passed: free_run")
    assert report["advice"] == []
    assert [(m["mv"], m["isolated_steps"] >= 10) for m in report["excitation"]] == [("fuel_kw", True)]


def test_a_twin_whose_gain_sign_is_wrong_is_not_promotable_and_the_verdict_says_why(heater: TrainingOutcome) -> None:
    twin = heater.twin
    net = Twin.__new__(Twin)
    net.__dict__.update(twin.__dict__)
    net.net = type(twin.net)(twin.config, 2, 1, 0)
    net.net.load_state_dict(twin.net.state_dict())
    net.net.eval()
    nz = twin.config.nz
    with torch.no_grad():  # the fuel input enters the predictor with its sign flipped: heating now cools
        net.net.predictor.layers[0].weight[:, :, nz] *= -1.0
    report = _reevaluate(heater, net)
    assert not report["promotable"]
    assert _checks(report)["gain_signs"] is False
    assert report["reason"].startswith("failed: ")
    assert (
        "gain_signs (2 of 2 gain signs the data shows disagree: outlet_degc/fuel_kw data +, twin -" in report["reason"]
    )


def test_a_twin_whose_intervals_are_too_narrow_is_not_promotable_and_the_verdict_names_coverage(
    heater: TrainingOutcome,
) -> None:
    twin = heater.twin
    narrow = Twin.__new__(Twin)
    narrow.__dict__.update(twin.__dict__)
    narrow.calibration = dataclasses.replace(twin.calibration, scale=twin.calibration.scale * 0.2)
    report = _reevaluate(heater, narrow)
    checks = _checks(report)
    assert not report["promotable"] and checks["coverage"] is False and checks["gain_signs"] is True
    # Judged on the band production draws: recent errors 5x calibration's widen it only to its ceiling (3x), too little.
    assert "failed: coverage (adaptive band coverage outside 0.80-1.00 at outlet_degc h1" in report["reason"]
    plain, adaptive = report["coverage"]["h1"]["outlet_degc"], report["adaptive_coverage"]["h1"]["outlet_degc"]
    assert plain < adaptive < 0.8
    assert "passed: free_run" in report["reason"]  # the same net: its errors did not change
    assert any(a.startswith("The prediction intervals, calibrated on the validation segment") for a in report["advice"])


def test_a_normally_calibrated_twin_is_judged_on_its_adaptive_band_and_stays_promotable(
    heater: TrainingOutcome,
) -> None:
    report = heater.report.to_dict()
    assert report["promotable"] and _checks(report)["coverage"] is True
    assert "coverage (adaptive band coverage of every CV within 0.80-1.00 at 1, 5 and 20 steps)" in report["reason"]
    for key in ("h1", "h5", "h20"):  # the adaptive band only widens: it covers at least as often as the plain one
        assert all(report["adaptive_coverage"][key][cv] >= report["coverage"][key][cv] for cv in report["cv_names"])


def test_a_twin_calibrated_before_the_adaptive_band_is_judged_on_its_plain_band_and_says_so(
    heater: TrainingOutcome,
) -> None:
    twin = heater.twin
    older = Twin.__new__(Twin)
    older.__dict__.update(twin.__dict__)
    older.calibration = dataclasses.replace(twin.calibration, error_quantile=None)
    report = _reevaluate(heater, older)
    assert report["adaptive_coverage"] is None
    assert (
        "coverage (calibrated band coverage (judged unwidened: the twin was calibrated before the adaptive band"
        in (report["reason"])
    )
    # Its plain band decides: this twin's covers stack O2 0.71-0.79 on test (its offset-free estimate is sharper on
    # validation than on test), so it fails; the same band half as wide again passes, a fifth as wide fails.
    wide = Twin.__new__(Twin)
    wide.__dict__.update(older.__dict__)
    wide.calibration = dataclasses.replace(older.calibration, scale=older.calibration.scale * 1.5)
    assert _reevaluate(heater, wide)["promotable"]
    narrow = Twin.__new__(Twin)
    narrow.__dict__.update(older.__dict__)
    narrow.calibration = dataclasses.replace(older.calibration, scale=older.calibration.scale * 0.2)
    report = _reevaluate(heater, narrow)
    assert (
        not report["promotable"] and "failed: coverage (calibrated band coverage (judged unwidened" in report["reason"]
    )
