"""A given plan (e.g. the proposal scaled down by the engineer) is re-simulated on the twin and re-checked."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import MpcController, MpcStatus
from tests.optimizer.exports import first_order_export
from tests.optimizer.test_controller import FAST, first_order_spec

Z0 = np.full((2, 1), 1.0)


def controller(**spec_kw: float) -> MpcController:
    meta, arrays = first_order_export(rate=0.5)
    return MpcController.from_export(meta, arrays, first_order_spec(**spec_kw), FAST)


def test_the_solved_plan_re_simulates_to_the_same_prediction_and_gain() -> None:
    c = controller(cv_high=5.0)
    solved = c.solve(z0=Z0, mv={"F": 1.0})
    again = c.evaluate_plan(z0=Z0, mv={"F": 1.0}, plan=solved.mv_plan)
    assert again.status is MpcStatus.OPTIMAL, again.message
    assert again.cv_mean["C"] == pytest.approx(solved.cv_mean["C"], abs=1e-9)
    assert again.objective_gain == pytest.approx(solved.objective_gain, rel=1e-9)


def test_a_plan_scaled_towards_holding_moves_less_and_gains_less() -> None:
    c = controller(cv_high=5.0)
    solved = c.solve(z0=Z0, mv={"F": 1.0})
    half = {"F": [1.0 + 0.5 * (v - 1.0) for v in solved.mv_plan["F"]]}
    scaled = c.evaluate_plan(z0=Z0, mv={"F": 1.0}, plan=half)
    assert scaled.status is MpcStatus.OPTIMAL, scaled.message
    assert scaled.first_move["F"] == pytest.approx(0.5 * solved.first_move["F"])
    assert 0 < scaled.objective_gain < solved.objective_gain


def test_a_plan_that_breaks_a_move_limit_or_a_safety_limit_is_refused_and_says_which() -> None:
    c = controller(cv_high=5.0, safety_high=6.0, max_move=1.0)
    jump = c.evaluate_plan(z0=Z0, mv={"F": 1.0}, plan={"F": [3.0] * FAST.horizon})
    assert jump.status is MpcStatus.INFEASIBLE and not jump.has_proposal
    assert "move limit" in jump.message
    ramp = [min(10.0, 1.0 + k + 1.0) for k in range(FAST.horizon)]  # legal moves, but C rises past 6
    unsafe = c.evaluate_plan(z0=Z0, mv={"F": 1.0}, plan={"F": ramp})
    assert unsafe.status is MpcStatus.INFEASIBLE
    assert "safety limit" in unsafe.message


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        ({"G": [1.0] * FAST.horizon}, "no MV F"),
        ({"F": [1.0] * 3}, "finite setpoints"),
        ({"F": [np.nan] * 12}, "finite"),
    ],
)
def test_a_malformed_plan_is_bad_input(plan: dict[str, list[float]], why: str) -> None:
    result = controller().evaluate_plan(z0=Z0, mv={"F": 1.0}, plan=plan)
    assert result.status is MpcStatus.BAD_INPUT and why in result.message


def test_the_gain_comes_with_the_members_disagreement_about_it() -> None:
    agreeing = controller(cv_high=5.0).solve(z0=Z0, mv={"F": 1.0})  # two identical members
    assert agreeing.objective_gain_spread == pytest.approx(0.0, abs=1e-9)
    meta, arrays = first_order_export(rate=0.5)
    c = MpcController.from_export(meta, arrays, first_order_spec(cv_high=5.0), FAST)
    apart = c.solve(z0=np.array([[0.8], [1.2]]), mv={"F": 1.0})  # members that disagree about the state
    assert apart.has_proposal and apart.objective_gain_spread is not None and apart.objective_gain_spread > 0
