"""Plans do not unwind at the horizon's end: what their final setpoints cost after the horizon counts within it."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import CvSpec, Limits, MpcController, MpcSettings, MpcSpec, MpcStatus, MvSpec, ObjectiveTerm
from tests.optimizer.exports import first_order_export

HORIZON = 12


def slow_product_spec() -> MpcSpec:
    """Feed F costs at once; product C pays only as it follows F, with a lag longer than the horizon."""
    return MpcSpec(
        cvs=(CvSpec("C", Limits(0.0, 5.0)),),
        mvs=(MvSpec("F", Limits(0.0, 10.0), max_move_per_step=1.0),),
        objective_terms=(ObjectiveTerm(("C",), 1.0, "product"), ObjectiveTerm(("F",), -0.5, "feed cost")),
    )


def plan_from_steady(start: float = 2.0, rate: float = 0.05, **settings: object) -> np.ndarray:
    """Return the F plan from a steady F = C = start on a twin whose C follows F at `rate` per step."""
    meta, arrays = first_order_export(rate=rate)
    result = MpcController.from_export(
        meta, arrays, slow_product_spec(), MpcSettings(horizon=HORIZON, uncertainty_weight=0.0, **settings)
    ).solve(z0=np.full((2, 1), start), mv={"F": start})
    assert result.status is MpcStatus.OPTIMAL, result.message
    return np.array(result.mv_plan["F"])


def test_a_line_at_its_steady_optimum_is_planned_to_stay_there_not_to_cut_its_feed_before_the_horizon_ends() -> None:
    # C lags F by ~7 steps; F = C = 5 is the steady optimum (C's limit). Without a terminal cost (the former default)
    # the plan held F over the first half and ramped it to 0 by the end: the feed saved counted, the product it
    # costs fell after the horizon. With the default terminal tail the plan holds the optimum throughout.
    plan = plan_from_steady(start=5.0, rate=0.15)
    assert plan == pytest.approx(np.full(HORIZON, 5.0), abs=0.05), plan


def test_from_below_the_optimum_the_plan_may_overdrive_but_ends_at_the_steady_optimum() -> None:
    plan = plan_from_steady(start=2.0, rate=0.15)  # the former default ended at 0.1, below where it started
    assert plan[-1] == pytest.approx(5.0, abs=0.1), plan


def test_a_plan_whose_benefit_lags_past_the_horizon_ends_near_the_steady_optimum_not_below_its_start() -> None:
    plan = plan_from_steady(terminal_tail_steps=3 * HORIZON)  # a tail covering the lag's settling (~20 steps)
    # steady optimum: C = F, value 0.5 F up to the product's limit C = 5, so F = 5
    assert plan[-1] >= 2.0 + 0.8 * (5.0 - 2.0), plan
    assert plan[-1] <= 5.0 + 0.5, plan  # no more feed held than the limit lets pay
    excursion = np.max(plan) - 2.0
    assert (np.max(plan) - plan[-1]) / excursion < 0.5, plan  # what is given back is overdrive, not the move


def test_without_the_terminal_cost_the_same_plan_unwinds_below_where_it_started() -> None:
    plan = plan_from_steady(terminal_tail_steps=0)  # no tail, only the terminal hold
    assert plan[-1] < 2.0 - 1.0, plan  # the feed saved at the end counts, the product it costs comes after


def test_the_tail_is_linearised_once_per_solve_not_at_every_step_of_the_sqp(monkeypatch: pytest.MonkeyPatch) -> None:
    # re-linearised at every SQP step, the heat train's 30-step tail needed 5.3 linearisations a solve, not 2.8
    meta, arrays = first_order_export(rate=0.15)
    controller = MpcController.from_export(
        meta, arrays, slow_product_spec(), MpcSettings(horizon=HORIZON, uncertainty_weight=0.0)
    )
    sqp = controller.sqp
    assert sqp is not None and sqp.tail_twin is not None
    calls = {"tail": 0, "plan": 0}
    for name, twin in (("tail", sqp.tail_twin), ("plan", sqp.twin)):
        original = twin.linearise

        def counted(*args: object, _name: str = name, _original: object = original) -> object:
            calls[_name] += 1
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(twin, "linearise", counted)
    result = controller.solve(z0=np.full((2, 1), 2.0), mv={"F": 2.0})
    assert result.status is MpcStatus.OPTIMAL, result.message
    assert calls["plan"] > 2 and calls["tail"] == 1, calls
