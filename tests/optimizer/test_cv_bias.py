"""Offset-free MPC: a constant CV bias (measured minus predicted now) shifts every predicted CV over the horizon."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import CvSpec, Limits, MpcController, MpcSettings, MpcSpec, MpcStatus, MvSpec, ObjectiveTerm
from optimizer.reference import IpoptReferenceController
from tests.optimizer.exports import first_order_export, numpy_rollout

OFFSET = 1.0  # the plant's C is the twin's C plus this, always (a constant output disturbance)


def spec(*, safety_high: float | None = None) -> MpcSpec:
    """F raises C; product value F * C rises with F until C reaches its operating high limit 5."""
    return MpcSpec(
        cvs=(CvSpec("C", Limits(0.0, 5.0), Limits(None, safety_high)),),
        mvs=(MvSpec("F", Limits(0.0, 10.0), max_move_per_step=1.0),),
        objective_terms=(ObjectiveTerm(("F", "C"), 1.0, "product value"),),
    )


SOLVERS = {"condensed-qp": MpcController, "ipopt": IpoptReferenceController}  # the controller and its reference


def settings() -> MpcSettings:
    return MpcSettings(horizon=12, move_weight=1e-3, uncertainty_weight=0.0, terminal_tail_steps=0)  # as the reference


def true_c(meta, arrays, result, z0: np.ndarray) -> np.ndarray:
    """Return the plant's C (N,) under the result's plan: the twin's mean plus the offset."""
    plan = np.array(result.mv_plan["F"])[:, None]
    return numpy_rollout(meta, arrays, z0, plan, np.zeros((len(plan), 0))).mean(axis=1)[:, 0] + OFFSET


@pytest.mark.parametrize("subproblem", ["condensed-qp", "ipopt"])
def test_with_the_bias_the_plan_respects_the_true_limit_which_the_biased_prediction_broke(subproblem) -> None:
    meta, arrays = first_order_export(rate=0.5)
    z0, mv = np.full((2, 1), 1.0), {"F": 1.0}
    plain = SOLVERS[subproblem].from_export(meta, arrays, spec(), settings()).solve(z0=z0, mv=mv)
    assert plain.status is MpcStatus.OPTIMAL, plain.message
    assert max(true_c(meta, arrays, plain, z0)) > 5.0 + 0.5  # the twin reads 1 low: the plant ends 1 over

    corrected = (
        SOLVERS[subproblem].from_export(meta, arrays, spec(), settings()).solve(z0=z0, mv=mv, cv_bias={"C": OFFSET})
    )
    assert corrected.status is MpcStatus.OPTIMAL, corrected.message
    c = true_c(meta, arrays, corrected, z0)
    assert max(c) <= 5.0 + 1e-3 and max(c) == pytest.approx(5.0, abs=1e-3)  # binds at the true limit
    assert corrected.cv_mean["C"] == pytest.approx(tuple(c), abs=1e-6)  # reported predictions include the bias
    assert corrected.cv_hold_mean["C"][-1] == pytest.approx(1.0 + OFFSET, abs=1e-6)  # holding F = 1: C = 1 + bias
    assert corrected.cv_lo["C"][0] <= corrected.cv_mean["C"][0] <= corrected.cv_hi["C"][0]
    assert corrected.objective_gain > 0
    assert "C:cv_high" in corrected.active_constraints


@pytest.mark.parametrize("subproblem", ["condensed-qp", "ipopt"])
def test_the_bias_applies_to_safety_limits_too(subproblem) -> None:
    meta, arrays = first_order_export(rate=0.5)
    z0 = np.full((2, 1), 4.0)  # the twin reads C = 4, the plant is at 5: with safety high 4.5 it is beyond
    controller = SOLVERS[subproblem].from_export(meta, arrays, spec(safety_high=4.5), settings())
    assert controller.solve(z0=z0, mv={"F": 4.0}).status is MpcStatus.OPTIMAL
    result = controller.solve(z0=z0, mv={"F": 4.0}, cv_bias={"C": OFFSET})
    if subproblem == "ipopt":  # the IPOPT reference has no recovery
        assert result.status is MpcStatus.INFEASIBLE, result.message
    else:  # beyond safety now (through the bias): the recovery plan, not INFEASIBLE (issue 12)
        assert result.status is MpcStatus.OPTIMAL and result.fallback == "recovery", result.message
        assert result.cv_mean["C"][-1] <= 4.5
    assert "C=5 is above its safety high limit 4.5" in result.message


def test_a_zero_bias_or_none_changes_nothing() -> None:
    meta, arrays = first_order_export(rate=0.5)
    z0, mv = np.full((2, 1), 1.0), {"F": 1.0}
    base = MpcController.from_export(meta, arrays, spec(), settings()).solve(z0=z0, mv=mv)
    for bias in (None, {}, {"C": 0.0}):
        other = MpcController.from_export(meta, arrays, spec(), settings()).solve(z0=z0, mv=mv, cv_bias=bias)
        assert other.mv_plan == base.mv_plan and other.cv_mean == base.cv_mean
        assert other.objective_gain == base.objective_gain


@pytest.mark.parametrize(
    ("bias", "why"),
    [
        ({"C": float("nan")}, "CV bias holds NaN or inf: ['C']"),
        ({"C": float("inf")}, "CV bias holds NaN or inf: ['C']"),
        ({"X": 1.0}, "not CVs of the twin: ['X']"),
        ({"C": "high"}, "CV bias values must be numbers"),
    ],
)
def test_a_bad_bias_gives_bad_input_without_solving(bias, why) -> None:
    meta, arrays = first_order_export(rate=0.5)
    result = MpcController.from_export(meta, arrays, spec(), settings()).solve(
        z0=np.full((2, 1), 1.0), mv={"F": 1.0}, cv_bias=bias
    )
    assert result.status is MpcStatus.BAD_INPUT
    assert why in result.message
    assert result.solve_time_s is None and result.iterations is None  # the solver was never called
    assert not result.has_proposal
