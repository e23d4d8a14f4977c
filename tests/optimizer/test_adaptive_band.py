"""The adaptive band (twins.adaptive) widens, per call, the calibrated band the optimizer enforces and reports."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from optimizer import MpcController, MpcStatus
from tests.optimizer.exports import first_order_export
from tests.optimizer.test_calibrated_bands import FAST, calibrated
from tests.optimizer.test_controller import first_order_spec


def controller(*, scale: float = 1.0, floor: float = 0.5, cv_high: float = 9.0, backoff: float = 0.0):
    """Identical members: the calibrated half-width is scale * floor at every step ahead."""
    meta, arrays = calibrated(first_order_export(rate=0.5), np.full((5, 1), scale), [floor])
    settings = dataclasses.replace(FAST, cv_backoff=backoff)
    return MpcController.from_export(meta, arrays, first_order_spec(cv_high=cv_high, safety_high=6.0), settings)


def half(result) -> np.ndarray:
    return np.array(result.cv_hi["C"]) - np.array(result.cv_mean["C"])


def test_errors_twice_the_calibrated_ones_double_the_band_and_the_safety_margin_for_that_call_only() -> None:
    mpc, z0 = controller(), np.full((2, 1), 4.0)
    plain = mpc.solve(z0=z0, mv={"F": 4.0})
    # warm-started from the plain plan, which the wider band makes unsafe: it starts again from holding
    widened = mpc.solve(z0=z0, mv={"F": 4.0}, band_scale={"C": 2.0})
    again = mpc.solve(z0=z0, mv={"F": 4.0})
    for result in (plain, widened, again):
        assert result.status is MpcStatus.OPTIMAL, result.message
    assert half(plain) == pytest.approx(np.full(8, 0.5), abs=1e-9)
    assert half(widened) == pytest.approx(np.full(8, 1.0), abs=1e-9)
    # the safety limit (6) holds for mean + the widened band: the plan keeps twice the margin
    assert max(widened.cv_mean["C"]) == pytest.approx(5.0, abs=1e-3)
    assert max(plain.cv_mean["C"]) == pytest.approx(5.5, abs=1e-3)
    assert widened.band_scale == {"C": pytest.approx(2.0)}
    assert "widened by the twin's recent prediction errors: C ×2.00" in widened.message
    # the next call without a scale is back to the band as calibrated
    assert again.band_scale is None and "widened" not in again.message
    assert max(again.cv_mean["C"]) == pytest.approx(5.5, abs=1e-3)


def test_a_widened_band_is_the_same_as_a_twin_calibrated_that_wide() -> None:
    z0 = np.full((2, 1), 4.0)
    widened = controller().solve(z0=z0, mv={"F": 4.0}, band_scale={"C": 2.0})
    wide = controller(scale=2.0).solve(z0=z0, mv={"F": 4.0})
    assert widened.mv_plan["F"] == pytest.approx(wide.mv_plan["F"], abs=1e-6)
    assert widened.cv_hi["C"] == pytest.approx(wide.cv_hi["C"], abs=1e-6)


def test_the_soft_limit_back_off_grows_with_the_widened_band() -> None:
    mpc, z0 = controller(cv_high=5.0, floor=0.3, backoff=1.0), np.full((2, 1), 1.0)
    plain = mpc.solve(z0=z0, mv={"F": 1.0})
    widened = mpc.solve(z0=z0, mv={"F": 1.0}, band_scale={"C": 2.0})
    assert max(plain.cv_mean["C"]) == pytest.approx(4.7, abs=1e-3)  # held back by the one-step half-width 0.3
    assert max(widened.cv_mean["C"]) == pytest.approx(4.4, abs=1e-3)  # by 0.6 once recent errors doubled it
    assert "held back by the calibrated one-step band: C 0.6" in widened.message


def test_a_scale_per_step_ahead_widens_only_the_steps_it_names() -> None:
    result = controller().solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0}, band_scale={"C": [1.0, 1.0, 1.0, 3.0]})
    assert result.status is MpcStatus.OPTIMAL, result.message
    # plan step j is j + 1 steps ahead: steps 1 and 2 as calibrated, 3 on (the list's last value held) x3
    assert half(result) == pytest.approx([0.5, 0.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], abs=1e-9)
    assert result.band_scale == {"C": pytest.approx(3.0)}


def test_signing_re_simulates_with_the_proposals_band_so_a_plan_safe_only_with_the_narrow_band_is_refused() -> None:
    mpc, z0 = controller(), np.full((2, 1), 4.0)
    plan = mpc.solve(z0=z0, mv={"F": 4.0}).mv_plan  # mean reaches 5.5: safe with half 0.5 below 6
    assert mpc.evaluate_plan(z0=z0, mv={"F": 4.0}, plan=plan).status is MpcStatus.OPTIMAL
    checked = mpc.evaluate_plan(z0=z0, mv={"F": 4.0}, plan=plan, band_scale={"C": 2.0})
    assert checked.status is MpcStatus.INFEASIBLE
    assert "safety limit" in checked.message


@pytest.mark.parametrize(
    ("band_scale", "match"),
    [
        ({"C": 0.5}, "never narrowed"),
        ({"C": float("nan")}, "finite numbers >= 1"),
        ({"C": []}, "one per step ahead"),
        ({"C": "wide"}, "numbers or lists of numbers"),
        ({"T": 2.0}, "not CVs of the twin: \\['T'\\]"),
    ],
)
def test_a_bad_band_scale_is_refused_with_what_is_wrong(band_scale: dict, match: str) -> None:
    result = controller().solve(z0=np.full((2, 1), 4.0), mv={"F": 4.0}, band_scale=band_scale)
    assert result.status is MpcStatus.BAD_INPUT
    assert not result.has_proposal
    assert re.search(match, result.message), result.message


def test_a_twin_without_calibration_ignores_the_scale_and_keeps_saying_it_has_raw_spreads() -> None:
    meta, arrays = first_order_export(rate=0.5)  # version 1: no calibrated band to widen
    result = MpcController.from_export(meta, arrays, first_order_spec(), FAST).solve(
        z0=np.array([[1.0], [1.2]]), mv={"F": 1.0}, band_scale={"C": 2.0}
    )
    assert result.status is MpcStatus.OPTIMAL, result.message
    assert result.band_scale is None
    assert "no interval calibration" in result.message
