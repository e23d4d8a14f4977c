"""The twin's calibrated intervals, exported with it (v2), set the optimizer's bands and safety margins."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import CvSpec, DvSpec, ExportError, Limits, MpcController, MpcSettings, MpcSpec, MpcStatus, MvSpec
from optimizer.dynamics import TwinDynamics
from tests.optimizer.exports import first_order_export, numpy_rollout, random_export
from tests.optimizer.test_controller import first_order_spec
from tests.optimizer.trained import tiny_twin
from twins import export_arrays

FAST = MpcSettings(horizon=8, sqp_iterations=30)


def calibrated(export: tuple[dict, dict], scale: np.ndarray, floor: np.ndarray, coverage: float = 0.9):
    """Return the export as version 2 with the given interval calibration."""
    meta, arrays = export
    meta = {**meta, "version": 2, "calibration": {"coverage": coverage, "source": "val"}}
    return meta, {**arrays, "calib/scale": np.asarray(scale, float), "calib/floor": np.asarray(floor, float)}


def test_a_twin_with_a_wider_calibration_gets_wider_bands_and_a_plan_further_from_the_safety_limit() -> None:
    spec = first_order_spec(cv_high=9.0, safety_high=6.0)  # the safety limit binds, the soft one does not
    results = {}
    for scale in (1.0, 2.0):
        meta, arrays = calibrated(first_order_export(rate=0.5), np.full((5, 1), scale), [0.5])
        result = MpcController.from_export(meta, arrays, spec, FAST).solve(z0=np.full((2, 1), 4.0), mv={"F": 4.0})
        assert result.status is MpcStatus.OPTIMAL, result.message
        results[scale] = result
    for scale, result in results.items():
        half = np.array(result.cv_hi["C"]) - np.array(result.cv_mean["C"])
        assert half == pytest.approx(np.full(8, 0.5 * scale), abs=1e-9)  # identical members: scale * floor
        assert max(result.cv_hi["C"]) == pytest.approx(6.0, abs=1e-3)  # mean + calibrated half-width at safety
        assert result.band_coverage == 0.9
        assert "C:safety_high" in result.active_constraints
    assert max(results[2.0].cv_mean["C"]) == pytest.approx(5.0, abs=1e-3)
    assert max(results[1.0].cv_mean["C"]) == pytest.approx(5.5, abs=1e-3)
    assert max(results[2.0].mv_plan["F"]) < max(results[1.0].mv_plan["F"])


def test_bands_are_the_calibrated_interval_per_step_ahead_of_the_ensemble_spread(rng: np.random.Generator) -> None:
    scale, floor = rng.uniform(1.0, 3.0, size=(4, 2)), np.array([0.05, 0.2])
    meta, arrays = calibrated(random_export(members=3), scale, floor, coverage=0.8)
    spec = MpcSpec(cvs=(CvSpec("T"), CvSpec("C")), mvs=(MvSpec("F"), MvSpec("Q")), dvs=(DvSpec("T_in"),))
    controller = MpcController.from_export(meta, arrays, spec, MpcSettings(horizon=6))
    z0 = rng.normal(size=(3, 4))
    u_now = arrays["norm/mv_mean"]
    plan = {"F": [u_now[0]] * 6, "Q": [u_now[1]] * 6}
    d = arrays["norm/dv_mean"]
    result = controller.evaluate_plan(
        z0=z0, mv={"F": u_now[0], "Q": u_now[1]}, plan=plan, dv_forecast={"T_in": float(d[0])}
    )
    assert result.status is MpcStatus.OPTIMAL, result.message
    y = numpy_rollout(meta, arrays, z0, np.tile(u_now, (6, 1)), np.tile(d, (6, 1)))  # (N, M, n_cv)
    spread_n = y.std(axis=1) / arrays["norm/cv_std"]  # the twin's spread: population std, CV stds
    rows = np.minimum(np.arange(1, 7), 3)  # plan step k is k + 1 steps ahead; the last row beyond
    expected = arrays["norm/cv_std"] * scale[rows] * np.sqrt(spread_n**2 + floor**2)  # (N, n_cv)
    for i, name in enumerate(("T", "C")):
        got = np.array(result.cv_hi[name]) - np.array(result.cv_mean[name])
        assert got == pytest.approx(expected[:, i], rel=1e-9)
    assert result.band_coverage == 0.8
    assert "raw ensemble spreads" not in result.message


def test_an_export_without_calibration_keeps_raw_spreads_and_says_so() -> None:
    meta, arrays = first_order_export(rate=0.5)  # version 1: no calibration
    result = MpcController.from_export(meta, arrays, first_order_spec(), FAST).solve(
        z0=np.array([[1.0], [1.2]]), mv={"F": 1.0}
    )
    assert result.status is MpcStatus.OPTIMAL, result.message
    assert result.band_coverage is None
    assert "raw ensemble spreads: the twin export has no interval calibration" in result.message


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"calib/scale": np.ones((3, 2))}, "calib/scale"),
        ({"calib/floor": np.array([-0.1])}, "calib/floor >= 0"),
        ({"calib/scale": np.full((3, 1), np.nan)}, "NaN"),
    ],
)
def test_a_malformed_calibration_is_refused_with_a_clear_error(change: dict, match: str) -> None:
    meta, arrays = calibrated(first_order_export(), np.ones((3, 1)), [0.1])
    with pytest.raises(ExportError, match=match):
        TwinDynamics.from_export(meta, {**arrays, **change})
    with pytest.raises(ExportError, match="coverage"):
        TwinDynamics.from_export({**meta, "calibration": {}}, arrays)


def test_the_optimizers_bands_equal_the_twins_calibrated_intervals() -> None:
    twin, data = tiny_twin()
    meta, arrays = export_arrays(twin)
    assert meta["version"] == 2 and meta["calibration"]["coverage"] == twin.config.interval
    spec = MpcSpec(cvs=(CvSpec("level_m"),), mvs=(MvSpec("feed_m3_h", Limits(0.5, 1.5)),))
    controller = MpcController.from_export(meta, arrays, spec, MpcSettings(horizon=8))
    z0 = twin.initial_state(data)  # (M, nz)
    u = np.linspace(0.8, 1.2, 8)
    result = controller.evaluate_plan(z0=z0, mv={"feed_m3_h": 0.8}, plan={"feed_m3_h": list(u)})
    assert result.status is MpcStatus.OPTIMAL, result.message
    z, spread = z0[:, None], [np.zeros(1)]
    for t in range(8):
        z = twin.next(z, u[t : t + 1, None], np.zeros((1, 0)))
        spread.append(((twin.readout(z)[:, 0] - twin.norm.cv_mean) / twin.norm.cv_std).std(axis=0))
    half = twin.half_width(np.array(spread))[1:, 0] * twin.norm.cv_std[0]  # (8,) steps 1..8 ahead
    got = np.array(result.cv_hi["level_m"]) - np.array(result.cv_mean["level_m"])
    assert got == pytest.approx(half, rel=1e-7)
