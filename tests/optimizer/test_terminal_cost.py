"""Plans do not unwind at the horizon's end: what their final setpoints cost after the horizon counts within it."""

from __future__ import annotations

import numpy as np

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


def plan_from_steady_start(**settings: object) -> np.ndarray:
    """Return the F plan from a steady F = C = 2 on a twin whose C lags F by ~20 steps (rate 0.05 per step)."""
    meta, arrays = first_order_export(rate=0.05)
    result = MpcController.from_export(
        meta, arrays, slow_product_spec(), MpcSettings(horizon=HORIZON, uncertainty_weight=0.0, **settings)
    ).solve(z0=np.full((2, 1), 2.0), mv={"F": 2.0})
    assert result.status is MpcStatus.OPTIMAL, result.message
    return np.array(result.mv_plan["F"])


def test_a_plan_whose_benefit_lags_past_the_horizon_ends_near_the_steady_optimum_not_below_its_start() -> None:
    plan = plan_from_steady_start(terminal_tail_steps=3 * HORIZON)  # a tail covering the lag's settling
    # steady optimum: C = F, value 0.5 F up to the product's limit C = 5, so F = 5
    assert plan[-1] >= 2.0 + 0.8 * (5.0 - 2.0), plan
    assert plan[-1] <= 5.0 + 0.5, plan  # no more feed held than the limit lets pay
    excursion = np.max(plan) - 2.0
    assert (np.max(plan) - plan[-1]) / excursion < 0.5, plan  # what is given back is overdrive, not the move


def test_without_the_terminal_cost_the_same_plan_unwinds_below_where_it_started() -> None:
    plan = plan_from_steady_start()  # today's default: no tail, only the terminal hold
    assert plan[-1] < 2.0 - 1.0, plan  # the feed saved at the end counts, the product it costs comes after
