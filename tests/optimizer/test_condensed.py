"""The controller's condensed SQP plans like the IPOPT reference, keeps every hard limit, and plain CasADi models
plan like a twin of the same dynamics."""

from __future__ import annotations

import casadi as ca
import numpy as np
import pytest

from optimizer import (
    CasadiModel,
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
from optimizer.blas import _openblas, blas_threads
from optimizer.reference import IpoptReferenceController
from tests.optimizer.exports import first_order_export, numpy_rollout, random_export
from tests.optimizer.test_controller import FAST, first_order_spec


def _economic_problem(seed: int) -> tuple[dict, dict, MpcSpec]:
    meta, arrays = random_export(seed=seed)
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
    return meta, arrays, spec


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_the_condensed_qp_and_the_ipopt_subproblems_reach_the_same_plan_value(seed: int) -> None:
    meta, arrays, spec = _economic_problem(seed)
    z0 = np.random.default_rng(seed).normal(size=(3, 4))
    u_now = dict(zip(meta["mv"], arrays["norm/mv_mean"], strict=True))
    dv = {"T_in": float(arrays["norm/dv_mean"][0])}
    settings = MpcSettings(horizon=8, sqp_iterations=30, terminal_tail_steps=0)  # the IPOPT reference has no tail
    results = {}
    for subproblem, kind in (("condensed-qp", MpcController), ("ipopt", IpoptReferenceController)):
        controller = kind.from_export(meta, arrays, spec, settings)
        results[subproblem] = controller.solve(z0=z0, mv=u_now, dv_forecast=dv)
        assert results[subproblem].status is MpcStatus.OPTIMAL, results[subproblem].message
    qp, ipopt = results["condensed-qp"], results["ipopt"]
    assert qp.objective_plan == pytest.approx(ipopt.objective_plan, rel=1e-3, abs=1e-4)
    assert "QP qpoases" in qp.message and "IPOPT" in ipopt.message


def test_a_plan_pushed_against_a_safety_limit_keeps_mean_plus_spread_inside_it_on_the_exact_twin() -> None:
    meta, arrays = random_export(seed=11)
    z0 = np.random.default_rng(1).normal(size=(3, 4))
    mv_mean, d = arrays["norm/mv_mean"], arrays["norm/dv_mean"]
    hold = numpy_rollout(meta, arrays, z0, np.tile(mv_mean, (10, 1)), np.tile(d, (10, 1)))[:, :, 0]  # (N, M) of T
    high = float((hold.mean(axis=1) + hold.std(axis=1, ddof=1)).max()) + 0.05  # barely above holding
    spec = MpcSpec(
        cvs=(CvSpec("T", Limits(), Limits(None, high)), CvSpec("C", Limits())),
        mvs=(
            MvSpec("F", Limits(mv_mean[0] - 2.0, mv_mean[0] + 2.0), 0.5),
            MvSpec("Q", Limits(mv_mean[1] - 2.0, mv_mean[1] + 2.0), 0.5),
        ),
        dvs=(DvSpec("T_in"),),
        objective_terms=(ObjectiveTerm(("T",), 50.0),),  # the economics want T as high as the safety limit allows
    )
    settings = MpcSettings(horizon=10, sqp_iterations=40, uncertainty_weight=0.0)
    result = MpcController.from_export(meta, arrays, spec, settings).solve(
        z0=z0, mv=dict(zip(meta["mv"], mv_mean, strict=True)), dv_forecast={"T_in": d}
    )
    assert result.status is MpcStatus.OPTIMAL, result.message
    plan = np.column_stack([result.mv_plan["F"], result.mv_plan["Q"]])
    members = numpy_rollout(meta, arrays, z0, plan, np.tile(d, (10, 1)))[:, :, 0]
    upper = members.mean(axis=1) + members.std(axis=1, ddof=1)
    assert np.all(upper <= high + 1e-5)
    assert "T:safety_high" in result.active_constraints  # the limit binds: the plan really rides it


def test_a_casadi_model_of_the_same_dynamics_plans_like_the_twin() -> None:
    meta, arrays = first_order_export(rate=0.5, members=1)
    z, u = ca.SX.sym("z", 1), ca.SX.sym("u", 1)
    model = CasadiModel(
        cv=("C",),
        mv=("F",),
        dv=(),
        sample_period_s=60.0,
        step=ca.Function("step", [z, u, ca.SX.sym("d", 0)], [z + 0.5 * (u - z)]),
        readout=ca.Function("readout", [z], [z]),
        cv_std=np.ones(1),
        mv_std=np.ones(1),
        mv_min=np.zeros(1),
        mv_max=np.full(1, 10.0),
    )
    spec = first_order_spec(cv_high=5.0)
    twin = MpcController.from_export(meta, arrays, spec, FAST).solve(z0=np.full((1, 1), 1.0), mv={"F": 1.0})
    plain = MpcController(model, spec, FAST).solve(z0=np.full((1, 1), 1.0), mv={"F": 1.0})
    assert twin.status is MpcStatus.OPTIMAL and plain.status is MpcStatus.OPTIMAL, plain.message
    assert np.allclose(plain.mv_plan["F"], twin.mv_plan["F"], atol=1e-6)
    assert plain.objective_gain == pytest.approx(twin.objective_gain, abs=1e-6)
    ipopt = IpoptReferenceController(model, spec, FAST).solve(z0=np.full((1, 1), 1.0), mv={"F": 1.0})
    assert ipopt.status is MpcStatus.OPTIMAL and np.allclose(ipopt.mv_plan["F"], twin.mv_plan["F"], atol=1e-4)


def test_the_blas_thread_count_is_restored_after_a_solve() -> None:
    api = _openblas()
    if api is None:
        pytest.skip("numpy does not use a bundled OpenBLAS here")
    get, _ = api
    before = int(get())
    with blas_threads(1):
        assert int(get()) == 1
        with blas_threads(1):
            pass
        assert int(get()) == 1
    assert int(get()) == before


def test_an_unknown_subproblem_is_refused_loudly() -> None:
    # The controller has one solve path; the IPOPT reference is a class of its own, not a setting.
    with pytest.raises(TypeError, match="subproblem"):
        MpcSettings(subproblem="sqp")  # type: ignore[call-arg]


def test_a_failed_qp_does_not_poison_the_next_solves_of_the_same_controller() -> None:
    meta, arrays = first_order_export(rate=0.0)  # C does not respond to F: no plan recovers (no recovery plan)
    controller = MpcController.from_export(meta, arrays, first_order_spec(cv_high=5.0, safety_high=6.0), FAST)
    beyond = controller.solve(z0=np.full((2, 1), 8.0), mv={"F": 8.0})  # the QP is infeasible
    assert beyond.status is MpcStatus.INFEASIBLE
    for _ in range(3):
        again = controller.solve(z0=np.full((2, 1), 1.0), mv={"F": 1.0})
        assert again.status is MpcStatus.OPTIMAL, again.message
