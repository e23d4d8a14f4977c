"""The twin's OOD score is checked along the whole plan, on the latents the plan leads to and its MV setpoints."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import CvSpec, Limits, MpcController, MpcSettings, MpcSpec, MpcStatus, MvSpec
from tests.optimizer.exports import first_order_export
from tests.optimizer.test_controller import FAST, first_order_spec
from tests.optimizer.trained import tiny_twin
from twins import export_arrays

SPEC = MpcSpec(cvs=(CvSpec("level_m"),), mvs=(MvSpec("feed_m3_h", Limits(0.5, 1.5)),))


def twin_ood_along(twin, z0: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Return the twin's own OOD score of each step: max of (z_k, u_k) and (z_k+1, u_k), via Twin.ood_score."""
    z, scores, none = z0[:, None], [], np.zeros((1, 0))
    for k in range(len(u)):
        z_next = twin.next(z, u[k : k + 1, None], none)
        scores.append(
            max(twin.ood_score(z, u[k : k + 1, None], none)[0], twin.ood_score(z_next, u[k : k + 1, None], none)[0])
        )
        z = z_next
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
    wide = MpcSpec(cvs=SPEC.cvs, mvs=(MvSpec("feed_m3_h", Limits(0.0, 3.0)),))  # the line allows more than trained
    controller = MpcController.from_export(meta, arrays, wide, MpcSettings(horizon=8, trust_region_margin=2.0))
    z0 = twin.initial_state(data)
    inside = controller.evaluate_plan(z0=z0, mv={"feed_m3_h": 1.0}, plan={"feed_m3_h": [1.0] * 8})
    outside = controller.evaluate_plan(
        z0=z0, mv={"feed_m3_h": 1.0}, plan={"feed_m3_h": [1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0]}
    )
    assert inside.status is MpcStatus.OPTIMAL and outside.status is MpcStatus.OPTIMAL, outside.message
    assert outside.plan_ood_max > 3 * inside.plan_ood_max
    assert outside.plan_ood_step >= 5  # where the feed jumps outside anything seen in training
    assert outside.mv_plan["feed_m3_h"][outside.plan_ood_step - 1] == 3.0


def test_an_export_without_ood_statistics_reports_no_plan_ood() -> None:
    meta, arrays = first_order_export()  # version 1
    result = MpcController.from_export(meta, arrays, first_order_spec(), FAST).solve(z0=np.ones((2, 1)), mv={"F": 1.0})
    assert result.has_proposal and result.plan_ood is None and result.plan_ood_max is None
