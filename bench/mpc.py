"""Benchmark the MPC solve on the reference problem, against a straightforward Opti formulation of the same NLP.

Ours is the controller's condensed SQP (a dense QP per linearisation); `ipopt_*` is the IPOPT reference (IPOPT on
the multiple-shooting NLP of each linearisation, optimizer.reference), measured in the same run.

Run: `PYTHONPATH=. python bench/mpc.py [--quick]` (prints JSON); the CLI `twinops bench mpc --json` calls `run`.
Reference problem: latent dim 8, predictor and readout 2x64 tanh, ensemble 5, 4 MVs, 4 CVs, 1 DV, horizon 30.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import casadi as ca
import numpy as np

from optimizer import CvSpec, CvTarget, DvSpec, Limits, MpcController, MpcSettings, MpcSpec, MvSpec, ObjectiveTerm
from optimizer.dynamics import ACTIVATIONS, TwinDynamics
from optimizer.reference import IpoptReferenceController

NZ, HIDDEN, MEMBERS, HORIZON = 8, 64, 5, 30
CV, MV, DV = ("T_reactor", "C_product", "P_drum", "L_tank"), ("F_feed", "Q_heat", "F_cool", "R_reflux"), ("T_ambient",)


def reference_export(seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return a random but well-scaled twin export (meta, arrays) of the reference problem."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}

    def mlp(prefix: str, dims: list[int], last_gain: float) -> None:
        for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            gain = last_gain if i == len(dims) - 2 else 1.0
            arrays[f"{prefix}/W{i}"] = rng.normal(size=(n_out, n_in)) * gain / np.sqrt(n_in)
            arrays[f"{prefix}/b{i}"] = rng.normal(size=n_out) * 0.1

    for k in range(MEMBERS):
        mlp(f"m{k}/next", [NZ + len(MV) + len(DV), HIDDEN, HIDDEN, NZ], 0.1)
        mlp(f"m{k}/readout", [NZ, HIDDEN, HIDDEN, len(CV)], 1.0)
    for role, n, mean in (("cv", len(CV), 50.0), ("mv", len(MV), 10.0), ("dv", len(DV), 20.0)):
        arrays[f"norm/{role}_mean"] = np.full(n, mean)
        arrays[f"norm/{role}_std"] = np.full(n, 2.0)
    arrays["train/mv_min"], arrays["train/mv_max"] = np.full(len(MV), 6.0), np.full(len(MV), 14.0)
    arrays["train/dv_min"], arrays["train/dv_max"] = np.full(len(DV), 15.0), np.full(len(DV), 25.0)
    arrays["train/z_mean"], arrays["train/z_std"] = np.zeros((MEMBERS, NZ)), np.ones((MEMBERS, NZ))
    meta = {
        "format": "twinops-twin-export",
        "version": 1,
        "nz": NZ,
        "cv": list(CV),
        "mv": list(MV),
        "dv": list(DV),
        "members": MEMBERS,
        "activation": "tanh",
        "sample_period_s": 60.0,
    }
    return meta, arrays


def reference_spec() -> MpcSpec:
    """Return the reference line: soft CV limits, one safety limit, move limits, product value minus utilities."""
    cvs = tuple(
        CvSpec(name, Limits(47.0, 53.0), Limits(40.0, 60.0) if i == 0 else Limits(), rank=1 + i % 2)
        for i, name in enumerate(CV)
    )
    mvs = tuple(MvSpec(name, Limits(5.0, 15.0), max_move_per_step=0.5, ramp_rate_per_min=1.0) for name in MV)
    terms = (
        ObjectiveTerm(("F_feed", "C_product"), 0.02, "product value"),
        ObjectiveTerm(("Q_heat",), -0.3, "heating"),
        ObjectiveTerm(("F_cool",), -0.1, "cooling"),
        ObjectiveTerm(("R_reflux", "T_ambient"), -0.005, "reflux"),
    )
    return MpcSpec(cvs, mvs, (DvSpec(DV[0]),), terms, (CvTarget("P_drum", 50.0, 0.05),))


def _states(dyn: TwinDynamics, count: int, seed: int) -> list[np.ndarray]:
    """Return latent states along a slowly drifting closed loop: each state one twin step after the previous."""
    rng = np.random.default_rng(seed)
    step, z = dyn.step_function(), np.zeros(MEMBERS * NZ)
    states = []
    for _ in range(count):
        u = 10.0 + rng.normal(size=len(MV))
        z = np.asarray(step(z, u, [20.0 + rng.normal()])).reshape(-1)
        states.append(z.reshape(MEMBERS, NZ) + 0.01 * rng.normal(size=(MEMBERS, NZ)))
    return states


def _naive(dyn: TwinDynamics, spec: MpcSpec, settings: MpcSettings) -> tuple[Any, Any]:
    """Build the same NLP the way a newcomer writes it: Opti, Python loops over members and steps, exact Hessian.

    With {"expand": True} (scalarised to SX) the build alone took 499 s and each solve 9-17 s on the 2-core
    development machine, too slow to run in a benchmark; this MX version is the faster of the two naive forms.
    """
    opti, n = ca.Opti(), settings.horizon
    act = ACTIVATIONS[dyn.activation]
    u = opti.variable(len(MV), n)
    s = opti.variable(len(CV), n)
    z = [opti.variable(NZ, n + 1) for _ in range(MEMBERS)]
    z0, u_now, d = opti.parameter(MEMBERS * NZ), opti.parameter(len(MV)), opti.parameter(len(DV), n)

    def mlp(layers: Any, x: Any) -> Any:
        for i, layer in enumerate(layers):
            x = ca.mtimes(layer.weight, x) + layer.bias
            x = act(x) if i < len(layers) - 1 else x
        return x

    cost: Any = 0
    for k in range(n):
        ys = []
        for m in range(MEMBERS):
            if k == 0:
                opti.subject_to(z[m][:, 0] == z0[m * NZ : (m + 1) * NZ])
            x = ca.vertcat(z[m][:, k], (u[:, k] - dyn.mv_mean) / dyn.mv_std, (d[:, k] - dyn.dv_mean) / dyn.dv_std)
            opti.subject_to(z[m][:, k + 1] == z[m][:, k] + mlp(dyn.next_layers[m], x))
            ys.append(mlp(dyn.readout_layers[m], z[m][:, k + 1]) * dyn.cv_std + dyn.cv_mean)
        y = sum(ys) / MEMBERS
        var = sum(((yi - y) / dyn.cv_std) ** 2 for yi in ys) / (MEMBERS - 1)
        spread = ca.sqrt(var + 1e-10) * dyn.cv_std
        tags = {**{c: y[i] for i, c in enumerate(CV)}, **{m: u[i, k] for i, m in enumerate(MV)}, DV[0]: d[0, k]}
        for term in spec.objective_terms:
            cost -= term.price * _prod([tags[t] for t in term.tags]) / n
        for t in spec.targets:
            cost += t.weight * (tags[t.tag] - t.value) ** 2 / n
        move = u[:, k] - (u_now if k == 0 else u[:, k - 1])
        cost += settings.move_weight * ca.sumsqr(move / dyn.mv_std) / n + settings.uncertainty_weight * ca.sum1(var) / n
        for i, c in enumerate(spec.cvs):
            weight = settings.soft_penalty_by_rank[c.rank - 1]
            cost += weight * (s[i, k] + s[i, k] ** 2) / n
            opti.subject_to(y[i] + s[i, k] * dyn.cv_std[i] >= c.limits.low)
            opti.subject_to(y[i] - s[i, k] * dyn.cv_std[i] <= c.limits.high)
            if c.safety.low is not None:
                opti.subject_to(y[i] - settings.safety_spread_k * spread[i] >= c.safety.low)
            if c.safety.high is not None:
                opti.subject_to(y[i] + settings.safety_spread_k * spread[i] <= c.safety.high)
        for i, mv in enumerate(spec.mvs):
            step_max = min(mv.max_move_per_step or np.inf, (mv.ramp_rate_per_min or np.inf) * dyn.sample_period_s / 60)
            opti.subject_to(
                opti.bounded(max(mv.limits.low, dyn.train_mv_min[i]), u[i, k], min(mv.limits.high, dyn.train_mv_max[i]))
            )
            opti.subject_to(opti.bounded(-step_max, move[i], step_max))
    opti.subject_to(opti.bounded(0, ca.vec(s), np.inf))
    opti.minimize(cost)
    opti.solver(
        "ipopt",
        {"expand": False, "print_time": False},
        {"print_level": 0, "sb": "yes", "max_iter": settings.max_iterations, "tol": settings.tolerance},
    )
    return opti, (z0, u_now, d, u)


def _prod(values: list[Any]) -> Any:
    out = values[0]
    for v in values[1:]:
        out = out * v
    return out


def _percentiles(times_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(times_s) * 1e3
    return float(np.percentile(ms, 95)), float(np.median(ms))


def _time_solves(controller: MpcController | IpoptReferenceController, states: list[np.ndarray]) -> dict[str, Any]:
    """Solve from each state in turn, applying each first move (closed loop on the twin); return the timings."""
    mv_now = dict.fromkeys(MV, 10.0)
    times, cpu_times, iterations, statuses, failures, values = [], [], [], [], [], []
    controller.solve(z0=states[0], mv=mv_now, dv_forecast={DV[0]: 20.0})  # first (cold) solve, not timed
    for z in states[1:]:
        t0, c0 = time.perf_counter(), time.process_time()
        result = controller.solve(z0=z, mv=mv_now, dv_forecast={DV[0]: 20.0})
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        iterations.append(result.iterations or 0)
        statuses.append(result.status.value)
        if not result.has_proposal:
            failures.append(f"{result.status.value}: {result.message}")
        if result.first_setpoint:
            mv_now = dict(result.first_setpoint)
            assert result.objective_plan is not None
            values.append(result.objective_plan)
    p95, median = _percentiles(times)
    cpu_p95, cpu_median = _percentiles(cpu_times)
    return {
        "p95_ms": p95,
        "median_ms": median,
        "cpu_p95_ms": cpu_p95,
        "cpu_median_ms": cpu_median,
        "solves": len(times),
        "median_iterations": float(np.median(iterations)),
        "optimal": statuses.count("optimal"),
        "failures": failures,
        "mean_objective_plan": float(np.mean(values)) if values else None,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    """Time warm-started solves of the reference problem: ours, the IPOPT reference and the naive Opti one."""
    meta, arrays = reference_export()
    spec, settings = reference_spec(), MpcSettings(horizon=HORIZON)
    solves, ipopt_solves, naive_solves = (8, 4, 1) if quick else (50, 20, 5)
    started = time.perf_counter()
    controller = MpcController.from_export(meta, arrays, spec, settings)
    build_s = time.perf_counter() - started
    dyn = controller.dynamics
    assert isinstance(dyn, TwinDynamics)
    states = _states(dyn, solves + 1, seed=1)
    ours = _time_solves(controller, states)
    # The IPOPT reference (the multiple-shooting NLP of each linearisation), same states, same run.
    ipopt = _time_solves(IpoptReferenceController(dyn, spec, settings), states[: ipopt_solves + 1])

    started = time.perf_counter()
    opti, (z0, u_now, d, u) = _naive(dyn, spec, settings)
    opti.set_value(z0, states[0].reshape(-1))
    opti.set_value(u_now, np.full(len(MV), 10.0))
    opti.set_value(d, np.full((len(DV), HORIZON), 20.0))
    opti.set_initial(u, np.full((len(MV), HORIZON), 10.0))
    sol = opti.solve_limited()  # the first solve also builds the expanded functions: part of the build
    naive_build_s = time.perf_counter() - started
    naive_times, naive_iters = [], []
    for z in states[1 : naive_solves + 1]:
        opti.set_value(z0, z.reshape(-1))
        opti.set_initial(sol.value_variables())
        t0 = time.perf_counter()
        sol = opti.solve_limited()
        naive_times.append(time.perf_counter() - t0)
        naive_iters.append(int(opti.stats()["iter_count"]))

    naive_p95, naive_median = _percentiles(naive_times)
    return {
        **ours,
        "build_s": build_s,
        **{f"ipopt_{k}": v for k, v in ipopt.items() if k != "failures"},
        "ipopt_failures": ipopt["failures"],
        "naive_p95_ms": naive_p95,
        "naive_median_ms": naive_median,
        "naive_build_s": naive_build_s,
        "naive_solves": len(naive_times),
        "naive_median_iterations": float(np.median(naive_iters)),
        "problem": {
            "nz": NZ,
            "hidden": [HIDDEN, HIDDEN],
            "members": MEMBERS,
            "mvs": len(MV),
            "cvs": len(CV),
            "dvs": len(DV),
            "horizon": HORIZON,
            "qp_solver": settings.qp_solver,
            "blas_threads": settings.blas_threads,
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few solves, for a smoke test")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
