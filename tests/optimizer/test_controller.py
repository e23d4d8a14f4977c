"""The controller proposes moves that respect every limit and raise the economics, or says why it proposes none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optimizer import (
    CvSpec,
    DvSpec,
    Limits,
    MpcController,
    MpcSettings,
    MpcSpec,
    MpcStatus,
    MvSpec,
    ObjectiveTerm,
)
from tests.optimizer.exports import first_order_export, numpy_rollout, random_export

FAST = MpcSettings(horizon=12, move_weight=1e-3, uncertainty_weight=0.0)


def first_order_spec(*, cv_high: float = 5.0, safety_high: float | None = None, max_move: float = 1.0) -> MpcSpec:
    """F raises C; product value price * F * C rises with F until C reaches its operating high limit."""
    return MpcSpec(
        cvs=(CvSpec("C", Limits(0.0, cv_high), Limits(None, safety_high)),),
        mvs=(MvSpec("F", Limits(0.0, 10.0), max_move_per_step=max_move),),
        objective_terms=(ObjectiveTerm(("F", "C"), 1.0, "product value"),),
    )


def assert_no_proposal(result) -> None:
    assert not result.has_proposal
    for field in ("first_setpoint", "first_move", "mv_plan", "cv_mean", "cv_lo", "cv_hi", "objective_gain"):
        assert getattr(result, field) is None


def test_raising_the_feed_pays_until_the_product_limit_binds() -> None:
    meta, arrays = first_order_export(rate=0.5)
    controller = MpcController.from_export(meta, arrays, first_order_spec(cv_high=5.0), FAST)
    result = controller.solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0})
    assert result.status is MpcStatus.OPTIMAL, result.message
    assert result.first_move["F"] == pytest.approx(1.0, abs=1e-4)  # as fast as the move limit allows
    assert result.objective_gain > 0
    assert max(result.cv_mean["C"]) == pytest.approx(5.0, abs=1e-3)  # the soft limit binds, not crossed
    assert "C:cv_high" in result.active_constraints and "F:max_move" in result.active_constraints


def test_the_expected_gain_is_the_plan_minus_holding_setpoints_through_the_same_twin() -> None:
    meta, arrays = random_export(seed=7)
    spec = MpcSpec(
        cvs=(CvSpec("T", Limits(0.0, 100.0)), CvSpec("C", Limits(0.0, 100.0))),
        mvs=(MvSpec("F", Limits(0.0, 100.0), 1.0), MvSpec("Q", Limits(0.0, 100.0), 1.0)),
        dvs=(DvSpec("T_in"),),
        objective_terms=(
            ObjectiveTerm(("F", "C"), 0.1),
            ObjectiveTerm(("Q",), -0.5),
            ObjectiveTerm(("T", "T_in"), 0.01),
        ),
    )
    controller = MpcController.from_export(meta, arrays, spec, MpcSettings(horizon=8, sqp_iterations=30))
    z0 = np.random.default_rng(0).normal(size=(3, 4))
    u_now = dict(zip(meta["mv"], arrays["norm/mv_mean"], strict=True))
    t_in = float(arrays["norm/dv_mean"][0])
    result = controller.solve(z0=z0, mv=u_now, dv_forecast={"T_in": t_in})
    assert result.status is MpcStatus.OPTIMAL, result.message

    def value(u_plan: np.ndarray) -> float:
        y = numpy_rollout(meta, arrays, z0, u_plan, np.full((8, 1), t_in)).mean(axis=1)  # (N, n_cv)
        return float(np.mean(0.1 * u_plan[:, 0] * y[:, 1] - 0.5 * u_plan[:, 1] + 0.01 * y[:, 0] * t_in))

    plan = np.column_stack([result.mv_plan["F"], result.mv_plan["Q"]])
    hold = np.tile(arrays["norm/mv_mean"], (8, 1))
    assert result.objective_gain == pytest.approx(value(plan) - value(hold), abs=1e-6)
    assert result.objective_gain > 0


def test_the_plan_respects_mv_limits_move_limits_ramp_rates_and_safety_limits() -> None:
    meta, arrays = random_export(seed=11)
    z0 = np.random.default_rng(1).normal(size=(3, 4))
    mv_mean, d = arrays["norm/mv_mean"], arrays["norm/dv_mean"]
    hold = numpy_rollout(meta, arrays, z0, np.tile(mv_mean, (10, 1)), np.tile(d, (10, 1)))[:, :, 0]  # (N, M) of T
    band = hold.std(axis=1, ddof=1)
    safety = Limits(float((hold.mean(axis=1) - band).min()) - 0.2, float((hold.mean(axis=1) + band).max()) + 0.2)
    spec = MpcSpec(
        cvs=(CvSpec("T", Limits(), safety), CvSpec("C", Limits())),
        mvs=(
            MvSpec("F", Limits(mv_mean[0] - 1.0, mv_mean[0] + 1.0), max_move_per_step=0.3),
            MvSpec("Q", Limits(mv_mean[1] - 2.0, mv_mean[1] + 2.0), ramp_rate_per_min=0.4),
        ),  # 0.2 per 30 s step
        dvs=(DvSpec("T_in"),),
        objective_terms=(ObjectiveTerm(("T",), 5.0), ObjectiveTerm(("C",), 5.0), ObjectiveTerm(("F",), 1.0)),
    )
    settings = MpcSettings(horizon=10, safety_spread_k=1.0, sqp_iterations=30)
    result = MpcController.from_export(meta, arrays, spec, settings).solve(
        z0=z0, mv=dict(zip(meta["mv"], mv_mean, strict=True)), dv_forecast={"T_in": d}
    )
    assert result.status is MpcStatus.OPTIMAL, result.message
    plan = np.column_stack([result.mv_plan["F"], result.mv_plan["Q"]])
    tol = 1e-6
    assert np.all(plan[:, 0] >= mv_mean[0] - 1.0 - tol) and np.all(plan[:, 0] <= mv_mean[0] + 1.0 + tol)
    assert np.all(plan[:, 1] >= mv_mean[1] - 2.0 - tol) and np.all(plan[:, 1] <= mv_mean[1] + 2.0 + tol)
    moves = np.abs(np.diff(np.vstack([mv_mean, plan]), axis=0))
    assert np.all(moves[:, 0] <= 0.3 + tol) and np.all(moves[:, 1] <= 0.2 + tol)
    members = numpy_rollout(meta, arrays, z0, plan, np.tile(d, (10, 1)))[:, :, 0]  # (N, M) of T
    mean, spread = members.mean(axis=1), members.std(axis=1, ddof=1)
    assert np.all(mean + spread <= safety.high + 1e-5) and np.all(mean - spread >= safety.low - 1e-5)
    assert np.allclose(result.cv_mean["T"], mean, atol=1e-6)


def test_a_cv_outside_its_operating_limits_gets_a_plan_that_brings_it_back() -> None:
    meta, arrays = first_order_export(rate=0.5)
    result = MpcController.from_export(meta, arrays, first_order_spec(cv_high=5.0), FAST).solve(
        z0=np.full((2, 1), 8.0), mv={"F": 8.0}
    )
    assert result.status is MpcStatus.OPTIMAL, result.message
    assert result.first_move["F"] == pytest.approx(-1.0, abs=1e-4)
    assert result.cv_mean["C"][-1] <= 5.0 + 1e-3
    assert "outside their soft operating limits" in result.message


def test_a_cv_beyond_a_safety_limit_that_cannot_be_recovered_gives_no_proposal_and_says_so() -> None:
    # C does not respond to F at all, so no plan reduces the excess (a recoverable one gets a recovery plan:
    # tests/optimizer/test_robust_solves.py)
    meta, arrays = first_order_export(rate=0.0)
    spec = first_order_spec(cv_high=5.0, safety_high=6.0)
    result = MpcController.from_export(meta, arrays, spec, FAST).solve(z0=np.full((2, 1), 8.0), mv={"F": 8.0})
    assert result.status is MpcStatus.INFEASIBLE, result.message
    assert "C=8 is above its safety high limit 6" in result.message
    assert_no_proposal(result)


@pytest.mark.parametrize(
    ("z0", "mv", "dv", "why"),
    [
        (np.full((3, 4), np.nan), {"F": 1.0, "Q": 1.0}, {"T_in": 20.0}, "z0 holds NaN"),
        (np.zeros((3, 4)), {"F": np.nan, "Q": 1.0}, {"T_in": 20.0}, "current MVs hold NaN or inf: ['F']"),
        (np.zeros((3, 4)), {"F": 1.0, "Q": 1.0}, {"T_in": [20.0, np.nan]}, "DV forecast of T_in"),
        (np.zeros((4, 3)), {"F": 1.0, "Q": 1.0}, {"T_in": 20.0}, "shape (4, 3), expected"),
        (np.zeros((3, 4)), {"F": 1.0}, {"T_in": 20.0}, "missing ['Q']"),
        (np.zeros((3, 4)), {"F": 1.0, "Q": 1.0}, {"T_in": [1.0, 2.0, 3.0]}, "has 3 values, expected 1"),
    ],
)
def test_bad_inputs_give_bad_input_and_no_proposal(z0, mv, dv, why) -> None:
    meta, arrays = random_export()
    spec = MpcSpec(tuple(CvSpec(n) for n in meta["cv"]), tuple(MvSpec(n) for n in meta["mv"]), (DvSpec("T_in"),))
    controller = MpcController.from_export(meta, arrays, spec, MpcSettings(horizon=6))
    result = controller.solve(z0=z0, mv=mv, dv_forecast=dv)
    assert result.status is MpcStatus.BAD_INPUT
    assert why in result.message
    assert result.solve_time_s is None and result.iterations is None  # the solver was never called
    assert_no_proposal(result)


def test_a_solver_out_of_time_gives_timeout_and_no_proposal() -> None:
    meta, arrays = first_order_export()
    settings = MpcSettings(horizon=12, max_solver_time_s=1e-6)
    result = MpcController.from_export(meta, arrays, first_order_spec(), settings).solve(
        z0=np.ones((2, 1)), mv={"F": 1.0}
    )
    assert result.status is MpcStatus.TIMEOUT
    assert "budget exhausted" in result.message
    assert_no_proposal(result)


def test_a_twin_whose_tags_do_not_match_the_line_is_incompatible() -> None:
    meta, arrays = first_order_export()
    spec = MpcSpec(cvs=(CvSpec("C_b"),), mvs=(MvSpec("F"),))
    result = MpcController.from_export(meta, arrays, spec).solve(z0=np.ones((2, 1)), mv={"F": 1.0})
    assert result.status is MpcStatus.INCOMPATIBLE
    assert "CV tags differ" in result.message and "C_b" in result.message
    assert_no_proposal(result)


def test_an_export_of_an_unknown_version_or_shape_is_incompatible() -> None:
    meta, arrays = first_order_export()
    spec = first_order_spec()
    for bad_meta, bad_arrays, why in (
        ({**meta, "version": 9}, arrays, "version 9"),
        (meta, {**arrays, "m0/next/W0": np.ones((1, 3))}, "m0/next/W0"),
    ):
        result = MpcController.from_export(bad_meta, bad_arrays, spec).solve(z0=np.ones((2, 1)), mv={"F": 1.0})
        assert result.status is MpcStatus.INCOMPATIBLE and why in result.message
        assert_no_proposal(result)


def test_mvs_stay_inside_the_range_the_twin_was_trained_on() -> None:
    meta, arrays = first_order_export()
    arrays = {**arrays, "train/mv_max": np.array([4.0])}
    spec = first_order_spec(cv_high=100.0, max_move=5.0)  # economics want F at its limit of 10
    result = MpcController.from_export(meta, arrays, spec, FAST).solve(z0=np.ones((2, 1)), mv={"F": 1.0})
    assert result.status is MpcStatus.OPTIMAL, result.message
    assert max(result.mv_plan["F"]) == pytest.approx(4.0, abs=1e-5)
    assert "F:trust_high" in result.active_constraints


def test_the_next_solve_starts_warm_from_the_previous_plan() -> None:
    meta, arrays = random_export(seed=2)
    spec = MpcSpec(
        tuple(CvSpec(n, Limits(0.0, 100.0)) for n in meta["cv"]),
        tuple(MvSpec(n, Limits(0.0, 100.0), 0.5) for n in meta["mv"]),
        (DvSpec("T_in"),),
        (ObjectiveTerm(("C",), 1.0), ObjectiveTerm(("Q",), -0.2)),
    )
    # Without the terminal tail: a warm and a cold solve linearise it at different plans (the previous plan shifted,
    # or holding), so they would solve slightly different problems; the warm start is judged on the plan alone.
    settings = MpcSettings(horizon=10, sqp_iterations=30, terminal_tail_steps=0)
    controller = MpcController.from_export(meta, arrays, spec, settings)
    z0 = np.random.default_rng(3).normal(size=(3, 4))
    mv = dict(zip(meta["mv"], arrays["norm/mv_mean"], strict=True))
    first = controller.solve(z0=z0, mv=mv, dv_forecast={"T_in": arrays["norm/dv_mean"]})
    assert first.status is MpcStatus.OPTIMAL, first.message
    # one sample later: the plant took the first move and the twin stepped once
    step = controller.dynamics.step_function()
    z1 = np.asarray(step(z0.reshape(-1), list(first.first_setpoint.values()), arrays["norm/dv_mean"])).reshape(3, 4)
    warm = controller.solve(z0=z1, mv=first.first_setpoint, dv_forecast={"T_in": arrays["norm/dv_mean"]})
    controller.reset()
    cold = controller.solve(z0=z1, mv=first.first_setpoint, dv_forecast={"T_in": arrays["norm/dv_mean"]})
    assert warm.status is MpcStatus.OPTIMAL and cold.status is MpcStatus.OPTIMAL
    assert warm.iterations < cold.iterations
    assert warm.objective_plan == pytest.approx(cold.objective_plan, rel=1e-3)


def test_limits_can_change_between_solves_without_a_rebuild() -> None:
    meta, arrays = first_order_export(rate=0.5)
    controller = MpcController.from_export(meta, arrays, first_order_spec(cv_high=5.0), FAST)
    tighter = controller.solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0}, spec=first_order_spec(cv_high=3.0))
    assert tighter.status is MpcStatus.OPTIMAL
    assert max(tighter.cv_mean["C"]) == pytest.approx(3.0, abs=1e-3)
    reshaped = MpcSpec(cvs=(CvSpec("C"),), mvs=(MvSpec("F"),))  # no objective term: another problem shape
    assert controller.solve(z0=np.ones((2, 1)), mv={"F": 1.0}, spec=reshaped).status is MpcStatus.INCOMPATIBLE


def test_the_result_is_plain_json() -> None:
    meta, arrays = first_order_export()
    result = MpcController.from_export(meta, arrays, first_order_spec(), FAST).solve(z0=np.ones((2, 1)), mv={"F": 1.0})
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "optimal"
    assert len(data["mv_plan"]["F"]) == 12 and len(data["cv_hi"]["C"]) == 12
    assert data["cv_lo"]["C"][0] <= data["cv_mean"]["C"][0] <= data["cv_hi"]["C"][0]
