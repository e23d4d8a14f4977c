"""Closed-loop benchmark on the simulated Van de Vusse reactor: hold setpoints vs MPC on the true model vs on a twin.

Run: `PYTHONPATH=. python bench/closedloop.py [--quick]` (prints JSON); the CLI `twinops bench closedloop --json`
calls `run`. Uses plantsim, twins and optimizer only (no Django). Over one seeded disturbance scenario (drifting
C_A0 and T_in, sensor noise, actuator ramps) it runs
  (a) hold: the nominal setpoints, untouched;
  (b) model: MPC on the reactor's own equations (a CasADi RK4 model, the true state measured exactly): the limit;
  (c) twin: MPC on a twin trained here, on CPU, on simulated history with step tests; its latent state is encoded
      from the measured window every sample.
(b) and (c) share the objective, limits, settings and MV range (the range the twin saw in training), so they
differ only in the model; `model_full_mv_range_economic_eur` shows, for scale, (b) allowed the line's whole MV range. Economic value per the line spec's objective terms (2 F C_b + 0.001 Q_dot per hour),
on the true CVs and the actuators' positions, summed over the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import casadi as ca
import numpy as np

from optimizer import CasadiModel, MpcController, MpcSettings, MpcSpec
from plantsim import vdv_reactor
from plantsim.history import generate_history
from plantsim.realism import FaultRates, Realism
from plantsim.simulator import build_simulator
from plantsim.spec import line_spec
from twins import Twin, TwinConfig, TwinDataset, export_arrays, split_by_time, train_twin

LINE = vdv_reactor.LINE_ID
TWIN = TwinConfig(window=16, nz=8, hidden=64, depth=2, members=5, horizon=30, epochs=20, steps_per_epoch=60,
                  batch_size=64)


@dataclass(frozen=True)
class Scenario:
    """One closed-loop experiment: the disturbance seed, its length and the twin's training history."""

    seed: int = 11  # plant seed: DV drift and sensor noise (the same for every controller)
    hours: float = 4.0  # controlled operation after warm-up
    warmup_steps: int = 40  # nominal operation first: the encoder's window and a settled start
    history_days: float = 4.0  # simulated history with step tests the twin is trained on
    history_seed: int = 3


# ---------------------------------------------------------------- the reactor in CasADi (the "true model")


def vdv_model(line_cvs: tuple[str, ...], scales: dict[str, np.ndarray], period_s: float) -> CasadiModel:
    """Return the Van de Vusse equations as a CasADi model stepping one sample period (RK4, as the simulator)."""
    p = vdv_reactor.VdvParameters()
    x, u, d = ca.SX.sym("x", 4), ca.SX.sym("u", 2), ca.SX.sym("d", 2)

    def rhs(x: Any) -> Any:
        c_a, c_b, t_r, t_k = x[0], x[1], x[2], x[3]
        t_abs = t_r + 273.15
        k1 = p.beta * p.k0_ab * ca.exp(-p.e_a_ab / t_abs)
        k2 = p.k0_bc * ca.exp(-p.e_a_bc / t_abs)
        k3 = p.k0_ad * ca.exp(-p.alpha * p.e_a_ad / t_abs)
        r1, r2, r3 = k1 * c_a, k2 * c_b, k3 * c_a**2
        f, q_dot, c_a0, t_in = u[0], u[1], d[0], d[1]
        return ca.vertcat(
            f * (c_a0 - c_a) - r1 - r3,
            -f * c_b + r1 - r2,
            (r1 * p.dh_ab + r2 * p.dh_bc + r3 * p.dh_ad) / (-p.rho * p.c_p) + f * (t_in - t_r)
            + p.k_w * p.a_r * (t_k - t_r) / (p.rho * p.c_p * p.v_r),
            (q_dot + p.k_w * p.a_r * (t_r - t_k)) / (p.m_k * p.c_pk),
        )

    steps = max(1, int(np.ceil(period_s / 3600.0 / vdv_reactor.VdvModel.max_step_h - 1e-9)))
    h = period_s / 3600.0 / steps
    xk = x
    for _ in range(steps):
        k1 = rhs(xk)
        k2 = rhs(xk + 0.5 * h * k1)
        k3 = rhs(xk + 0.5 * h * k2)
        k4 = rhs(xk + h * k3)
        xk = xk + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    order = [vdv_reactor.STATES.index(name) for name in line_cvs]
    step = ca.Function("vdv_step", [x, u, d], [xk])
    readout = ca.Function("vdv_readout", [x], [ca.vertcat(*[x[i] for i in order])])
    return CasadiModel(cv=line_cvs, mv=vdv_reactor.MVS, dv=vdv_reactor.DVS, sample_period_s=period_s, step=step,
                       readout=readout, cv_std=scales["cv_std"], mv_std=scales["mv_std"], mv_min=scales["mv_min"],
                       mv_max=scales["mv_max"])


# ---------------------------------------------------------------- the twin


def train_reactor_twin(scenario: Scenario, config: TwinConfig) -> tuple[Twin, float]:
    """Simulate history with step tests and train a twin on it on CPU; return it and the wall seconds spent."""
    clock = time.perf_counter()
    history = generate_history(LINE, days=scenario.history_days, start=datetime(2024, 1, 1, tzinfo=UTC),
                               seed=scenario.history_seed)
    line = history.line
    cols = {name: i for i, name in enumerate(history.columns)}

    def part(role: str) -> tuple[np.ndarray, tuple[str, ...]]:
        names = line.names(role)
        return history.values[:, [cols[n] for n in names]], names

    (cv, cv_names), (mv, mv_names), (dv, dv_names) = part("CV"), part("MV"), part("DV")
    data = TwinDataset.from_arrays(cv=cv, mv=mv, dv=dv, cv_names=cv_names, mv_names=mv_names, dv_names=dv_names,
                                   sample_period_s=line.sample_period_s)
    twin = train_twin(split_by_time(data), config, device="cpu", cpu_threads=1)  # small matmuls: 1 thread is as fast
    return twin, time.perf_counter() - clock


# ---------------------------------------------------------------- the loop


def closed_loop(mode: str, scenario: Scenario, controller: MpcController | None, twin: Twin | None) -> dict[str, Any]:
    """Run one controller over the scenario; return economics, limit violations and solve statistics."""
    sim = build_simulator(LINE, seed=scenario.seed, realism=Realism(faults=FaultRates(0.0, 0.0, 0.0)))
    line, dt = sim.line, sim.line.sample_period_s
    cvs, mvs, dvs = line.names("CV"), line.names("MV"), line.names("DV")
    tags = {t.name: t for t in line.tags}
    rows: list[list[float]] = []  # measured CVs, MV setpoints, measured DVs per sample (the encoder's input)
    for _ in range(scenario.warmup_steps):
        sample = sim.step(dt)
        rows.append([sample.values[n] for n in (*cvs, *mvs, *dvs)])
    steps = int(round(scenario.hours * 3600.0 / dt))
    value_eur, hard, soft_s, solve_s, failures = 0.0, 0, 0.0, [], 0
    reasons: dict[str, int] = {}
    for _ in range(steps):
        if controller is not None:
            if twin is not None:
                recent = np.asarray(rows[-twin.config.window :])
                window = TwinDataset.from_arrays(
                    cv=recent[:, : len(cvs)], mv=recent[:, len(cvs) : len(cvs) + len(mvs)],
                    dv=recent[:, len(cvs) + len(mvs) :], cv_names=cvs, mv_names=mvs, dv_names=dvs,
                    sample_period_s=dt)
                z0 = twin.initial_state(window)  # (M, nz)
                dv_now = {n: float(recent[-1, len(cvs) + len(mvs) + i]) for i, n in enumerate(dvs)}
            else:
                z0 = np.asarray(sim.model.x, dtype=float)[None, :]  # the true state: the limit
                dv_now = {n: sim.last.true[n] for n in dvs}
            result = controller.solve(z0=z0, mv=sim.setpoints, dv_forecast=dv_now)
            solve_s.append(result.solve_time_s or 0.0)
            if result.first_setpoint is not None:
                for name, value in result.first_setpoint.items():
                    sim.write_setpoint(name, value)
            else:
                failures += 1
                key = result.status.value
                reasons[key] = reasons.get(key, 0) + 1
        sample = sim.step(dt)
        rows.append([sample.values[n] for n in (*cvs, *mvs, *dvs)])
        true = {**sample.true, **sample.actuators}
        value_eur += sum(t.price * float(np.prod([true[n] for n in t.tags])) for t in line.objective_terms) * dt / 3600
        for name in cvs:
            tag, v = tags[name], true[name]
            low, high = tag.safety_limits or (None, None)
            if (low is not None and v < low) or (high is not None and v > high):
                hard += 1
            low, high = tag.limits or (None, None)
            if (low is not None and v < low) or (high is not None and v > high):
                soft_s += dt
                break
    out: dict[str, Any] = {"economic_eur": value_eur, "hard_violations": hard, "soft_violation_minutes": soft_s / 60,
                           "steps": steps, "final_setpoints": sim.setpoints}
    if controller is not None:
        ms = np.asarray(solve_s) * 1e3
        out |= {"failed_solves": failures, "failure_reasons": reasons,
                "solve_median_ms": float(np.median(ms)), "solve_p95_ms": float(np.percentile(ms, 95))}
    return out


def run(*, quick: bool = False) -> dict[str, Any]:
    """Run hold, MPC on the true model and MPC on a freshly trained twin over one scenario; return the figures."""
    clock = time.perf_counter()
    scenario = Scenario(hours=0.25, history_days=1.0) if quick else Scenario()
    config = dataclasses.replace(TWIN, epochs=2, steps_per_epoch=10) if quick else TWIN
    twin, train_s = train_reactor_twin(scenario, config)
    meta, arrays = export_arrays(twin)
    line = vdv_reactor.make_line()
    spec = MpcSpec.from_line_spec(line_spec(line))
    settings = MpcSettings(horizon=30)
    scales = {"cv_std": arrays["norm/cv_std"], "mv_std": arrays["norm/mv_std"],
              "mv_min": arrays["train/mv_min"], "mv_max": arrays["train/mv_max"]}
    model = vdv_model(tuple(meta["cv"]), scales, line.sample_period_s)
    hold = closed_loop("hold", scenario, None, None)
    limit = closed_loop("model", scenario, MpcController(model, spec, settings), None)
    # For scale only: the true model allowed the line's whole MV range, beyond what the twin's data cover.
    wide = {**scales, "mv_min": np.array([m.limits.low for m in spec.mvs]), "mv_max": np.array([m.limits.high for m in spec.mvs])}
    # Far moves (F up to 100) need more linearisations from a cold start than the 15 of the default settings.
    full_range = closed_loop("model", scenario, MpcController(vdv_model(tuple(meta["cv"]), wide, line.sample_period_s),
                                                              spec, dataclasses.replace(settings, sqp_iterations=60)),
                             None)
    learned = closed_loop("twin", scenario, MpcController.from_export(meta, arrays, spec, settings), twin)
    gain_model = limit["economic_eur"] - hold["economic_eur"]
    gain_twin = learned["economic_eur"] - hold["economic_eur"]
    return {
        "gain_ratio": gain_twin / gain_model if gain_model > 0 else None,
        "hard_violations": learned["hard_violations"],
        "soft_violation_minutes": learned["soft_violation_minutes"],
        "model_soft_violation_minutes": limit["soft_violation_minutes"],
        "model_hard_violations": limit["hard_violations"],
        "hold_economic_eur": hold["economic_eur"], "model_economic_eur": limit["economic_eur"],
        "twin_economic_eur": learned["economic_eur"],
        "model_full_mv_range_economic_eur": full_range["economic_eur"],
        "model_full_mv_range_hard_violations": full_range["hard_violations"],
        "model_full_mv_range_failed_solves": full_range["failed_solves"],
        "model_full_mv_range_soft_violation_minutes": full_range["soft_violation_minutes"],
        "hold": hold, "model": limit, "twin": learned,
        "twin_train_s": train_s, "twin_train_last_val_cv": twin.info.history[-1].get("val_cv"),
        "run_s": time.perf_counter() - clock, "quick": quick,
        "scenario": dataclasses.asdict(scenario), "horizon": settings.horizon,
        "mv_range": {name: [float(lo), float(hi)] for name, lo, hi in
                     zip(meta["mv"], arrays["train/mv_min"], arrays["train/mv_max"], strict=True)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run with a barely trained twin, for a smoke test")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
