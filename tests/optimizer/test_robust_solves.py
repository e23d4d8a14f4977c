"""The solver as a fallback-aware service: the last safe plan on a budget, recovery, warm starts, terminal hold."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import optimizer.sqp
from optimizer import CvSpec, Limits, MpcController, MpcSettings, MpcSpec, MpcStatus, MvSpec, ObjectiveTerm
from tests.optimizer.exports import first_order_export, numpy_rollout
from tests.optimizer.test_calibrated_bands import calibrated
from tests.optimizer.test_controller import FAST, first_order_spec


def linearisations(message: str) -> int:
    """Return the linearisation count a proposal's message reports."""
    found = re.search(r"(\d+) linearisations", message)
    assert found, message
    return int(found.group(1))


class SlowClock:
    """A clock that advances one second each time the SQP reads it: the time budget runs out mid-solve."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def test_a_timeout_with_a_safe_iterate_in_hand_proposes_it_marked_as_the_last_safe_plan(monkeypatch) -> None:
    meta, arrays = first_order_export(rate=0.5)
    spec = first_order_spec(cv_high=9.0, safety_high=6.0)
    settings = dataclasses.replace(FAST, max_solver_time_s=2.5, sqp_step=0.3)  # small steps: many linearisations
    monkeypatch.setattr(optimizer.sqp, "time", SlowClock())
    result = MpcController.from_export(meta, arrays, spec, settings).solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0})
    assert result.has_proposal and result.fallback == "last_safe_plan", result.message
    assert "linearisations; the last safe plan (time budget of 2.5 s spent)" in result.message
    assert result.first_move["F"] > 0  # better than holding: the SQP had moved before the budget ran out
    plan = np.array(result.mv_plan["F"])[:, None]
    y = numpy_rollout(meta, arrays, np.full((2, 1), 1.0), plan, np.zeros((12, 0)))[:, :, 0]
    assert np.all(y.mean(axis=1) + y.std(axis=1, ddof=1) <= 6.0 + 1e-6)  # the hard limit holds on the exact twin
    assert np.all(np.abs(np.diff(np.concatenate([[1.0], plan[:, 0]]))) <= 1.0 + 1e-9)


def test_a_plan_still_moving_within_the_time_budget_is_not_reported_as_a_timeout() -> None:
    meta, arrays = first_order_export(rate=0.5)
    settings = dataclasses.replace(FAST, sqp_iterations=1, sqp_step=0.3)
    result = MpcController.from_export(meta, arrays, first_order_spec(cv_high=9.0), settings).solve(
        z0=np.full((2, 1), 1.0), mv={"F": 1.0}
    )
    assert result.status is MpcStatus.OPTIMAL and result.fallback == "last_safe_plan", result.message
    assert "stopped after 1 linearisations; the last safe plan (plan still moving)" in result.message
    assert "timeout" not in result.message and "budget exhausted" not in result.message


def test_a_failed_solve_keeps_the_warm_start_from_the_last_good_plan() -> None:
    meta, arrays = first_order_export(rate=0.1)
    settings = MpcSettings(horizon=12, sqp_iterations=30, move_weight=1e-3, uncertainty_weight=0.0, sqp_step=0.3)
    controller = MpcController.from_export(meta, arrays, first_order_spec(cv_high=5.0), settings)
    first = controller.solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0})
    assert first.status is MpcStatus.OPTIMAL, first.message
    # a solve that fails (C rises past a tightened safety limit whatever F does; the line is not beyond it now)
    failed = controller.solve(
        z0=np.full((2, 1), 5.0), mv={"F": 10.0}, spec=first_order_spec(cv_high=5.0, safety_high=5.5)
    )
    assert failed.status is MpcStatus.INFEASIBLE and not failed.has_proposal, failed.message
    # two samples after the first solve (the failed one took a slot): the plant took the first plan's two moves
    f0, f1 = first.mv_plan["F"][:2]
    z1 = 1.0 + 0.1 * (f0 - 1.0)
    z2, mv2 = np.full((2, 1), z1 + 0.1 * (f1 - z1)), {"F": f1}
    warm = controller.solve(z0=z2, mv=mv2)
    controller.reset()
    cold = controller.solve(z0=z2, mv=mv2)
    assert warm.status is MpcStatus.OPTIMAL and cold.status is MpcStatus.OPTIMAL
    # started from the last good plan, not from holding: fewer linearisations to the same optimum
    assert linearisations(warm.message) < linearisations(cold.message)
    assert warm.objective_plan == pytest.approx(cold.objective_plan, rel=1e-3)


def test_a_line_beyond_a_safety_limit_gets_the_plan_that_returns_fastest() -> None:
    meta, arrays = first_order_export(rate=0.1)  # C can drop at most 10 % of the gap in one step
    spec = first_order_spec(cv_high=5.0, safety_high=6.0)
    result = MpcController.from_export(meta, arrays, spec, FAST).solve(z0=np.full((2, 1), 8.0), mv={"F": 8.0})
    assert result.has_proposal and result.fallback == "recovery", result.message
    assert result.message.startswith("recovery plan: the line is beyond a hard safety limit now")
    assert "C=8 is above its safety high limit 6 now, back within it from step 7" in result.message
    assert np.array(result.mv_plan["F"][:6]) == pytest.approx([7, 6, 5, 4, 3, 2], abs=1e-4)  # down at full rate
    assert max(result.cv_mean["C"][6:]) <= 6.0
    assert min(result.mv_plan["F"]) >= 0.0  # within the MV limits


def test_a_twin_returning_nan_inside_the_plan_never_gives_a_proposal(monkeypatch) -> None:
    meta, arrays = first_order_export(rate=0.5)
    controller = MpcController.from_export(meta, arrays, first_order_spec(safety_high=6.0), FAST)
    rollout, linearise = controller.sqp.twin.rollout, controller.sqp.twin.linearise

    def nan_rollout(z0, u, d):
        y = rollout(z0, u, d)
        y[5:] = np.nan
        return y

    def nan_linearise(z0, u, d):
        lin = linearise(z0, u, d)
        lin.y[5:] = np.nan
        return lin

    monkeypatch.setattr(controller.sqp.twin, "rollout", nan_rollout)
    monkeypatch.setattr(controller.sqp.twin, "linearise", nan_linearise)
    result = controller.solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0})
    assert not result.has_proposal and result.mv_plan is None, result.message
    checked = controller.evaluate_plan(z0=np.full((2, 1), 1.0), mv={"F": 1.0}, plan={"F": [1.0] * 12})
    assert checked.status is MpcStatus.INFEASIBLE and "NaN" in checked.message


def lagging_spec() -> MpcSpec:
    """C follows F with a lag; F costs now and C pays later: the kind of problem that unwinds at the horizon's end."""
    return MpcSpec(
        cvs=(CvSpec("C", Limits(0.0, 5.0)),),
        mvs=(MvSpec("F", Limits(0.0, 10.0), max_move_per_step=1.0),),
        objective_terms=(ObjectiveTerm(("C",), 1.0, "product"), ObjectiveTerm(("F",), -0.5, "feed cost")),
    )


def test_plans_hold_their_setpoints_at_the_horizons_end_instead_of_unwinding() -> None:
    meta, arrays = first_order_export(rate=0.3)
    plans = {}
    for hold in (0, 4):
        settings = MpcSettings(
            horizon=12, sqp_iterations=30, uncertainty_weight=0.0, terminal_hold_steps=hold, terminal_tail_steps=0
        )  # the hold alone (the terminal cost would keep F at 5 without it)
        result = MpcController.from_export(meta, arrays, lagging_spec(), settings).solve(
            z0=np.full((2, 1), 5.0), mv={"F": 5.0}
        )
        assert result.status is MpcStatus.OPTIMAL, result.message
        plans[hold] = np.array(result.mv_plan["F"])
    assert plans[0][-1] < plans[0][0] - 0.5  # without a terminal constraint the plan ramps F down at the end
    assert plans[4][-4:] == pytest.approx(np.full(4, plans[4][-5]), abs=1e-9)  # held over the last 4 steps
    assert plans[4][-1] == pytest.approx(5.0, abs=1e-3)  # and it stays at the steady optimum (C = F = 5)


def test_soft_limits_are_held_back_by_the_calibrated_band_so_the_line_does_not_ride_them() -> None:
    spec = first_order_spec(cv_high=5.0)  # economics push C to its operating (soft) limit
    meta, arrays = calibrated(first_order_export(rate=0.5), np.full((5, 1), 1.5), [0.2])  # one-step half-width 0.3
    results = {}
    for backoff in (1.0, 0.0):
        settings = dataclasses.replace(FAST, cv_backoff=backoff)
        result = MpcController.from_export(meta, arrays, spec, settings).solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0})
        assert result.status is MpcStatus.OPTIMAL, result.message
        results[backoff] = result
    assert max(results[0.0].cv_mean["C"]) == pytest.approx(5.0, abs=1e-3)
    assert max(results[1.0].cv_mean["C"]) == pytest.approx(4.7, abs=1e-3)
    assert "C:cv_high" in results[1.0].active_constraints  # held at the backed-off limit
    assert "soft CV limits held back by the calibrated one-step band: C 0.3" in results[1.0].message
    assert "held back" not in results[0.0].message
