"""The twin's OOD score is checked along the whole plan, on the latents the plan leads to and its MV setpoints."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import CvSpec, Limits, MpcController, MpcSettings, MpcSpec, MpcStatus, MvSpec, ObjectiveTerm
from tests.optimizer.exports import first_order_export
from tests.optimizer.test_controller import FAST, first_order_spec
from tests.optimizer.trained import tiny_twin
from twins import export_arrays

SPEC = MpcSpec(cvs=(CvSpec("level_m"),), mvs=(MvSpec("feed_m3_h", Limits(0.5, 1.5)),))


def twin_ood_along(twin, z0: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Return the twin's own OOD score of each step, via Twin.ood_score: (z_k, u_k), and (z_N, u_N-1) at the end."""
    z, scores, none = z0[:, None], [], np.zeros((1, 0))
    for k in range(len(u)):
        scores.append(twin.ood_score(z, u[k : k + 1, None], none)[0])
        z = twin.next(z, u[k : k + 1, None], none)
    scores[-1] = max(scores[-1], twin.ood_score(z, u[-1:, None], none)[0])
    return np.array(scores)


def test_the_plans_ood_scores_are_the_twins_own_on_the_rolled_out_latents() -> None:
    twin, data = tiny_twin()
    meta, arrays = export_arrays(twin)
    controller = MpcController.from_export(meta, arrays, SPEC, MpcSettings(horizon=8))
    z0 = twin.initial_state(data)
    u = np.linspace(0.6, 1.4, 8)
    result = controller.evaluate_plan(z0=z0, mv={"feed_m3_h": 0.6}, plan={"feed_m3_h": list(u)})
    assert result.status is MpcStatus.OPTIMAL, result.message
    expected = twin_ood_along(twin, z0, u)
    assert np.array(result.plan_ood) == pytest.approx(expected, rel=1e-7)
    assert result.plan_ood_max == pytest.approx(expected.max(), rel=1e-7)
    assert result.plan_ood_step == int(np.argmax(expected)) + 1


def test_a_plan_that_leaves_the_training_data_scores_higher_and_names_where() -> None:
    twin, data = tiny_twin()
    meta, arrays = export_arrays(twin)
    wide = MpcSpec(cvs=SPEC.cvs, mvs=(MvSpec("feed_m3_h", Limits(0.0, 6.0)),))  # the line allows more than trained
    controller = MpcController.from_export(meta, arrays, wide, MpcSettings(horizon=8, trust_region_margin=5.0))
    z0 = twin.initial_state(data)
    inside = controller.evaluate_plan(z0=z0, mv={"feed_m3_h": 1.0}, plan={"feed_m3_h": [1.0] * 8})
    outside = controller.evaluate_plan(
        z0=z0, mv={"feed_m3_h": 1.0}, plan={"feed_m3_h": [1.0, 1.0, 1.0, 1.0, 6.0, 6.0, 6.0, 6.0]}
    )
    assert inside.status is MpcStatus.OPTIMAL and outside.status is MpcStatus.OPTIMAL, outside.message
    assert outside.plan_ood_max > 3 * inside.plan_ood_max
    assert outside.plan_ood_step >= 5  # where the feed jumps outside anything seen in training
    assert outside.mv_plan["feed_m3_h"][outside.plan_ood_step - 1] == 6.0


def test_an_export_without_ood_statistics_reports_no_plan_ood() -> None:
    meta, arrays = first_order_export()  # version 1
    result = MpcController.from_export(meta, arrays, first_order_spec(), FAST).solve(z0=np.ones((2, 1)), mv={"F": 1.0})
    assert result.has_proposal and result.plan_ood is None and result.plan_ood_max is None


def test_a_limit_on_the_plans_ood_keeps_an_economic_plan_where_the_twin_has_seen_data() -> None:
    twin, data = tiny_twin()
    meta, arrays = export_arrays(twin)
    spec = MpcSpec(
        cvs=(CvSpec("level_m"),),
        mvs=(MvSpec("feed_m3_h", Limits(0.0, 6.0), max_move_per_step=0.4),),  # 4x the trained range's top
        objective_terms=(ObjectiveTerm(("feed_m3_h",), 1.0, "throughput"),),  # economics want the feed at 6
    )
    z0 = twin.initial_state(data)
    results = {}
    for limit in (None, 1.5):
        settings = MpcSettings(horizon=8, trust_region_margin=5.0, sqp_iterations=30, max_plan_ood=limit)
        result = MpcController.from_export(meta, arrays, spec, settings).solve(z0=z0, mv={"feed_m3_h": 1.0})
        assert result.has_proposal, result.message
        results[limit] = result
    assert results[None].plan_ood_max > 1.8  # unlimited, the plan runs far outside the training data
    assert results[1.5].plan_ood_max <= 1.5 + 0.02  # limited, it stays (up to the penalty's give) within the limit
    assert max(results[1.5].mv_plan["feed_m3_h"]) < max(results[None].mv_plan["feed_m3_h"])
    assert results[1.5].objective_gain > 0  # and still pays


def test_the_slope_of_the_plans_ood_matches_finite_differences() -> None:
    from optimizer.dynamics import TwinDynamics
    from optimizer.linearize import NumpyTwin
    from optimizer.ood import plan_ood

    twin, data = tiny_twin()
    dyn = TwinDynamics.from_export(*export_arrays(twin))
    assert dyn.ood is not None
    numpy_twin, norm = NumpyTwin(dyn), (dyn.mv_mean, dyn.mv_std, dyn.dv_mean, dyn.dv_std)
    z0 = twin.initial_state(data).reshape(-1)
    u, d = np.linspace(0.7, 1.6, 6)[None, :], np.zeros((0, 6))

    def scores(plan: np.ndarray) -> np.ndarray:
        lin = numpy_twin.linearise(z0, plan, d)
        return plan_ood(dyn.ood, norm, lin.z0, lin.z, plan, d)[0]

    lin = numpy_twin.linearise(z0, u, d)
    _, slope = plan_ood(dyn.ood, norm, lin.z0, lin.z, u, d, gz=lin.gz)
    h = 1e-6
    numeric = np.stack([(scores(u + h * np.eye(6)[j]) - scores(u - h * np.eye(6)[j])) / (2 * h) for j in range(6)], 1)
    assert slope == pytest.approx(numeric, abs=1e-6)
