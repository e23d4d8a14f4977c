"""Closed-loop benchmark on the simulated Van de Vusse reactor: hold setpoints vs MPC on the true model vs on a twin.

Run: `PYTHONPATH=. python bench/closedloop.py [--quick]` (prints JSON); the CLI `twinops bench closedloop --json`
calls `run`. Uses plantsim, twins and optimizer only (no Django). Over one seeded disturbance scenario (drifting
C_A0 and T_in, sensor noise, actuator ramps) it runs
  (a) hold: the nominal setpoints, untouched;
  (b) model: MPC on the reactor's own equations (a CasADi RK4 model, the true state measured exactly) under the
      line's own MV limits (the spec's operating limits): the limit;
  (c) twin: MPC on a twin trained here, on CPU, on simulated history with step tests over the operating range
      (`StepTests`); its latent state is encoded from the measured window every sample, and its trust region keeps
      the MVs inside the range it saw in training. It is offset-free MPC: the twin under-predicts C_a near the
      optimum, so every solve gets a constant output-disturbance estimate `cv_bias` (measured CVs now minus the
      twin's ensemble-mean readout of the encoded current latent), filtered as bias <- bias + alpha (new - bias)
      with alpha = BIAS_ALPHA = 0.3 (about 3 samples' memory: sensor noise is damped, a drifting offset followed
      within minutes); MpcController.solve adds it to every predicted CV over the horizon.
(b) and (c) share the objective, limits and settings (b runs more SQP iterations: far moves from a cold start;
(c) 30 rather than 15, as its bias makes the limits bind), so
`gain_ratio` is the twin's gain over holding divided by the true model's. `gain_ratio_within_training_range`
divides instead by the true model's gain when it too is kept inside the twin's training range: what the data
allowed. Economic value per the line spec's objective terms (2 F C_b + 0.001 Q_dot per hour),
on the true CVs and the actuators' positions, summed over the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

import casadi as ca
import numpy as np

from optimizer import CasadiModel, MpcController, MpcSettings, MpcSpec
from plantsim import vdv_reactor
from plantsim.line import Line
from plantsim.realism import FaultRates, Realism
from plantsim.simulator import build_simulator
from plantsim.spec import line_spec
from twins import Twin, TwinConfig, TwinDataset, export_arrays, split_by_time, train_twin

LINE = vdv_reactor.LINE_ID
BIAS_ALPHA = 0.3  # (c)'s bias filter: bias <- bias + BIAS_ALPHA * (measured - predicted now - bias)
TWIN = TwinConfig(
    window=16, nz=8, hidden=64, depth=2, members=5, horizon=30, epochs=20, steps_per_epoch=60, batch_size=64
)


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
            (r1 * p.dh_ab + r2 * p.dh_bc + r3 * p.dh_ad) / (-p.rho * p.c_p)
            + f * (t_in - t_r)
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
    return CasadiModel(
        cv=line_cvs,
        mv=vdv_reactor.MVS,
        dv=vdv_reactor.DVS,
        sample_period_s=period_s,
        step=step,
        readout=readout,
        cv_std=scales["cv_std"],
        mv_std=scales["mv_std"],
        mv_min=scales["mv_min"],
        mv_max=scales["mv_max"],
    )


# ---------------------------------------------------------------- the twin


@dataclass(frozen=True)
class StepTests:
    """The bench's step-test campaign: MV levels over the line's operating range, T_R kept below its limits.

    plantsim's default campaign only steps inside each MV's narrow test band (F 10-25, Q_dot -7000..-3500), far
    from where the economics want the line (F 35-50 with strong cooling, T_R near its 137 degC limit), and the twin's
    trust region would then keep MPC there. This campaign steps F over its whole operating range (5-100 1/h, half of
    the moves in 25-60 where the optimum lies) and Q_dot from full cooling (-8500) to the test band's top (-3500;
    less cooling only heats the reactor and costs product). Each move changes F, Q_dot or both; cooling is chosen
    for the new F so that T_R settles below its operating limit at nominal feed, and a watch on measured T_R (as
    the test engineer keeps) adds cooling, then cuts feed, whenever T_R passes 136.5 degC: no test goes near the
    140 degC safety limit.
    """

    f_range: tuple[float, float] = (5.0, 100.0)  # the spec's operating limits of F
    f_focus: tuple[float, float] = (25.0, 60.0)  # where half the F levels are drawn: around the economic optimum
    q_range: tuple[float, float] = (-8500.0, -3500.0)  # full cooling .. top of the test band
    min_hold_s: float = 300.0  # holds log-uniform in between: many levels, each long against the ~2 min dynamics
    max_hold_s: float = 3600.0
    back_to_nominal: float = 0.1
    settle_s: float = 1800.0
    t_r_watch: float = 136.5  # measured T_R above this: more cooling, then less feed
    # The most Q_dot (least cooling) per F that keeps steady-state T_R below ~136 degC at nominal feed.
    q_high_at_f: tuple[tuple[float, float], ...] = (
        (5.0, -3500.0),
        (15.0, -3500.0),
        (20.0, -4000.0),
        (30.0, -5000.0),
        (40.0, -6500.0),
        (50.0, -8000.0),
        (100.0, -8000.0),
    )


def step_test_history(line_id: str, *, days: float, seed: int, plan: StepTests) -> tuple[Line, np.ndarray, dict]:
    """Simulate `days` of step tests per `plan`; return the line, the samples (N, n_tags, line order) and stats."""
    sim = build_simulator(line_id, seed=seed)  # default realism: noise, drift, ramps, sensor faults
    line, dt = sim.line, sim.line.sample_period_s
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    nominal = {n: line.mv_tuning[n].nominal for n in line.names("MV")}
    f_knots, q_knots = (np.array(v) for v in zip(*plan.q_high_at_f, strict=True))
    n = int(round(days * 86400.0 / dt))
    columns = [t.name for t in line.tags]
    values = np.empty((n, len(columns)))
    next_move, moves, watch_steps, t_r_seen = plan.settle_s, 0, 0, float("nan")
    max_true_t_r = -np.inf
    for k in range(n):
        t = k * dt
        if t >= next_move:
            f, q = sim.setpoints["F"], sim.setpoints["Q_dot"]
            if rng.random() < plan.back_to_nominal:
                f, q = nominal["F"], nominal["Q_dot"]
            else:
                which = rng.integers(3)  # 0: F only, 1: Q_dot only, 2: both
                if which in (0, 2):
                    lo, hi = plan.f_focus if rng.random() < 0.5 else plan.f_range
                    f = round(float(rng.uniform(lo, hi)) * 2) / 2
                q_high = float(np.interp(f, f_knots, q_knots))
                if which in (1, 2) or q > q_high:
                    q = round(float(rng.uniform(plan.q_range[0], q_high)) / 50) * 50
            sim.write_setpoint("F", f)
            sim.write_setpoint("Q_dot", q)
            moves += 1
            next_move = t + float(np.exp(rng.uniform(np.log(plan.min_hold_s), np.log(plan.max_hold_s))))
        if np.isfinite(t_r_seen) and t_r_seen > plan.t_r_watch:  # the engineer's watch on T_R
            watch_steps += 1
            if sim.setpoints["Q_dot"] > plan.q_range[0]:
                sim.write_setpoint("Q_dot", max(plan.q_range[0], sim.setpoints["Q_dot"] - 500.0))
            else:
                sim.write_setpoint("F", max(plan.f_range[0], sim.setpoints["F"] - 5.0))
        sample = sim.step(dt)
        values[k] = [sample.values[c] for c in columns]
        if np.isfinite(sample.values["T_R"]):
            t_r_seen = sample.values["T_R"]
        max_true_t_r = max(max_true_t_r, sample.true["T_R"])
    stats = {"moves": moves, "watch_minutes": watch_steps * dt / 60, "max_true_T_R": float(max_true_t_r)}
    return line, values, stats


def train_reactor_twin(
    scenario: Scenario, config: TwinConfig, plan: StepTests | None = None
) -> tuple[Twin, float, dict]:
    """Simulate history with step tests and train a twin on it on CPU; return it, the wall seconds and stats."""
    clock = time.perf_counter()
    line, values, stats = step_test_history(
        LINE, days=scenario.history_days, seed=scenario.history_seed, plan=plan or StepTests()
    )
    cols = {t.name: i for i, t in enumerate(line.tags)}

    def part(role: str) -> tuple[np.ndarray, tuple[str, ...]]:
        names = line.names(role)
        return values[:, [cols[n] for n in names]], names

    (cv, cv_names), (mv, mv_names), (dv, dv_names) = part("CV"), part("MV"), part("DV")
    data = TwinDataset.from_arrays(
        cv=cv,
        mv=mv,
        dv=dv,
        cv_names=cv_names,
        mv_names=mv_names,
        dv_names=dv_names,
        sample_period_s=line.sample_period_s,
    )
    twin = train_twin(split_by_time(data), config, device="cpu", cpu_threads=1)  # small matmuls: 1 thread is as fast
    return twin, time.perf_counter() - clock, stats


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
    by_cv = {name: {"minutes": 0.0, "max_excess": 0.0} for name in cvs}  # soft-limit excursions per CV
    bias: dict[str, float] | None = None  # (c): filtered measured-minus-predicted CVs now (offset-free MPC)
    for _ in range(steps):
        if controller is not None:
            if twin is not None:
                recent = np.asarray(rows[-twin.config.window :])
                window = TwinDataset.from_arrays(
                    cv=recent[:, : len(cvs)],
                    mv=recent[:, len(cvs) : len(cvs) + len(mvs)],
                    dv=recent[:, len(cvs) + len(mvs) :],
                    cv_names=cvs,
                    mv_names=mvs,
                    dv_names=dvs,
                    sample_period_s=dt,
                )
                z0 = twin.initial_state(window)  # (M, nz)
                dv_now = {n: float(recent[-1, len(cvs) + len(mvs) + i]) for i, n in enumerate(dvs)}
                predicted = twin.readout(z0[:, None, :]).mean(axis=0)[0]  # (n_cv,) ensemble mean now
                bias = dict(bias or {n: 0.0 for n in cvs})
                for i, name in enumerate(cvs):
                    new = float(recent[-1, i]) - float(predicted[i])
                    if np.isfinite(new):  # a missing measurement keeps the last estimate
                        bias[name] += BIAS_ALPHA * (new - bias[name])
            else:
                z0 = np.asarray(sim.model.x, dtype=float)[None, :]  # the true state: the limit
                dv_now = {n: sim.last.true[n] for n in dvs}
            result = controller.solve(z0=z0, mv=sim.setpoints, dv_forecast=dv_now, cv_bias=bias)
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
        outside = False
        for name in cvs:
            low, high = tags[name].limits or (None, None)
            excess = max(low - true[name] if low is not None else 0.0, true[name] - high if high is not None else 0.0)
            if excess > 0:
                outside = True
                by_cv[name]["minutes"] += dt / 60
                by_cv[name]["max_excess"] = max(by_cv[name]["max_excess"], excess)
        soft_s += dt if outside else 0.0
    out: dict[str, Any] = {
        "economic_eur": value_eur,
        "hard_violations": hard,
        "soft_violation_minutes": soft_s / 60,
        "soft_violation_by_cv": {n: v for n, v in by_cv.items() if v["minutes"] > 0},
        "steps": steps,
        "final_setpoints": sim.setpoints,
    }
    if bias is not None:
        out["final_cv_bias"] = bias
    if controller is not None:
        ms = np.asarray(solve_s) * 1e3
        out |= {
            "failed_solves": failures,
            "failure_reasons": reasons,
            "solve_median_ms": float(np.median(ms)),
            "solve_p95_ms": float(np.percentile(ms, 95)),
        }
    return out


def run(*, quick: bool = False) -> dict[str, Any]:
    """Run hold, MPC on the true model and MPC on a freshly trained twin over one scenario; return the figures."""
    clock = time.perf_counter()
    scenario = Scenario(hours=0.25, history_days=1.0) if quick else Scenario()
    config = dataclasses.replace(TWIN, epochs=2, steps_per_epoch=10) if quick else TWIN
    twin, train_s, history_stats = train_reactor_twin(scenario, config)
    meta, arrays = export_arrays(twin)
    line = vdv_reactor.make_line()
    spec = MpcSpec.from_line_spec(line_spec(line))
    settings = MpcSettings(horizon=30)
    scales = {
        "cv_std": arrays["norm/cv_std"],
        "mv_std": arrays["norm/mv_std"],
        "mv_min": np.array([m.limits.low for m in spec.mvs]),
        "mv_max": np.array([m.limits.high for m in spec.mvs]),
    }
    trained = {**scales, "mv_min": arrays["train/mv_min"], "mv_max": arrays["train/mv_max"]}
    hold = closed_loop("hold", scenario, None, None)
    # The limit: the true model under the line's own MV limits. Far moves (F up to 100) need more linearisations
    # from a cold start than the 15 of the default settings.
    limit = closed_loop(
        "model",
        scenario,
        MpcController(
            vdv_model(tuple(meta["cv"]), scales, line.sample_period_s),
            spec,
            dataclasses.replace(settings, sqp_iterations=60),
        ),
        None,
    )
    # For reference: the true model kept inside the MV range the twin saw in training (the twin's trust region),
    # what the twin could at best earn from its data.
    within = closed_loop(
        "model",
        scenario,
        MpcController(vdv_model(tuple(meta["cv"]), trained, line.sample_period_s), spec, settings),
        None,
    )
    # Offset-free (c) needs up to 30 linearisations: with the bias the C_a and T_R limits bind and 15 left ~1 solve
    # in 5 still moving (a timeout: setpoints held); each stays ~30 ms median.
    learned = closed_loop(
        "twin",
        scenario,
        MpcController.from_export(meta, arrays, spec, dataclasses.replace(settings, sqp_iterations=30)),
        twin,
    )
    gain_model = limit["economic_eur"] - hold["economic_eur"]
    gain_within = within["economic_eur"] - hold["economic_eur"]
    gain_twin = learned["economic_eur"] - hold["economic_eur"]
    return {
        "gain_ratio": gain_twin / gain_model if gain_model > 0 else None,
        "gain_ratio_within_training_range": gain_twin / gain_within if gain_within > 0 else None,
        "hard_violations": learned["hard_violations"],
        "soft_violation_minutes": learned["soft_violation_minutes"],
        "model_soft_violation_minutes": limit["soft_violation_minutes"],
        "model_hard_violations": limit["hard_violations"],
        "hold_economic_eur": hold["economic_eur"],
        "model_economic_eur": limit["economic_eur"],
        "twin_economic_eur": learned["economic_eur"],
        "model_within_training_range_economic_eur": within["economic_eur"],
        "model_within_training_range_hard_violations": within["hard_violations"],
        "model_within_training_range_soft_violation_minutes": within["soft_violation_minutes"],
        "hold": hold,
        "model": limit,
        "model_within_training_range": within,
        "twin": learned,
        "twin_train_s": train_s,
        "twin_train_last_val_cv": twin.info.history[-1].get("val_cv"),
        "history": history_stats,
        "run_s": time.perf_counter() - clock,
        "quick": quick,
        "scenario": dataclasses.asdict(scenario),
        "horizon": settings.horizon,
        "mv_range": {
            name: [float(lo), float(hi)]
            for name, lo, hi in zip(meta["mv"], arrays["train/mv_min"], arrays["train/mv_max"], strict=True)
        },
        "mv_limits": {
            name: [float(lo), float(hi)]
            for name, lo, hi in zip(meta["mv"], scales["mv_min"], scales["mv_max"], strict=True)
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run with a barely trained twin, for a smoke test")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
