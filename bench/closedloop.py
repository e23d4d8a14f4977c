"""Closed-loop benchmark on the simulated lines: hold setpoints vs MPC on the true model vs MPC on a twin.

Run: `PYTHONPATH=. python bench/closedloop.py [--quick]` (prints JSON); the CLI `twinops bench closedloop --json`
calls `run`. Uses plantsim, twins and optimizer only (no Django). Honest by construction (issue 12 item 8):

- The twin is trained as `twinops demo` trains it: on plantsim's generic step-test history (`generate_history`,
  default `StepTestPlan`: random MV levels inside each MV's test band, sensor faults and all; `history_days` as the
  demo's default) with the platform's default `TwinConfig`. Nothing in it knows where the optimum lies.
- Each reported seed s draws its own history (history seed HISTORY_SEED_OFFSET + s), twin training (seed s) and
  closed-loop plant (DV drift and sensor noise, seed s); SEEDS are reported, TUNING_SEEDS never, and `run` refuses
  seeds in both. The tuning settings (TUNING: bias filter, SQP linearisations, CV back-off) may only be chosen with
  `tune` (`--tune`: TUNING_GRID scored on TUNING_SEEDS; it refuses reported seeds). The values in TUNING were
  chosen before this rework, with a twin trained on the former, optimum-aware step tests, on reactor plants that are
  now tuning seeds: the bias filter and the linearisations on plant seed 11 (the former bench's one scenario), the
  back-off on plant seed 5 (see MpcSettings.cv_backoff); 21 is the heat-train seed the terminal tail was judged on.
  They have not been re-chosen with `tune` since (its cost: a full run per candidate).
  `--quick`: the first seed, 15 min loops, a tiny twin.
- Three cases, each an object in the output:
    `vdv-reactor`           the Van de Vusse reactor;
    `heat-train`            the feed preheat train, with its line spec's objective (product, fuel, steam, hot oil)
                            and T_out target;
    `vdv-reactor-mismatch`  the reactor's twin (trained on the nominal plant) on a plant whose A -> B rate constant
                            k0_ab has drifted by MISMATCH_K0_AB (-15 %) after training: at nominal setpoints C_b
                            settles 10 % lower and T_R 1.3 degC higher, nearer its 137 degC limit. (A drifted jacket
                            coefficient k_w was tried first: at steady state the jacket passes Q_dot whatever k_w, so
                            only T_K moved and the case showed nothing.)

Per case and seed three controllers run over the same disturbances (`hours` after a nominal warm-up):
  (a) hold: the nominal setpoints, untouched;
  (b) model: MPC on the plant's own equations in CasADi (bench/_true_models.py), its true state measured exactly,
      under the line's own MV limits: the limit. The reactor's equations are exact (with the drifted k0_ab in the
      mismatch case: the reference knows the plant as it is). The heat train's are exact except its transfer line,
      a plug flow with a flow-dependent dead time, taken as 18 mixed cells in series: open loop, after steps of
      F_feed, its T_E2_in is up to 3.6 degC off during a transient (0.4 mean), T_out 0.3 at worst;
  (c) twin: MPC on the twin as the platform runs it (horizon min(30, the twin's), plan OOD kept under 2.7), its
      latent estimated every sample from the measured rows as the twin's training chose (Twin.encode: the
      moving-horizon fit where it won on validation, else the encoder), offset-free with a CV bias (measured minus the twin's
      ensemble-mean readout now) filtered as bias <- bias + alpha (new - bias). The platform's withholding checks
      (OOD now, innovations) are not applied here: every slot asks the optimizer.
(b) and (c) share the objective, horizon and limits; every sample is a slot and its proposal is applied at once.

Figures per case (one object each; `per_seed` holds each seed's detail):
  gain_ratio_median, gain_ratio_worst   (c)'s economic gain over (a) divided by (b)'s gain, median and lowest over
                                        seeds. Economic value per the line spec's objective terms, on the true CVs
                                        and the actuators' positions, summed over the run.
  gain_ratio_within_training_range      per seed: divided instead by (b) kept inside the MV range the twin saw
                                        in training: what the data allowed.
  hard_violations                       (c)'s samples with a true CV beyond a safety limit, total over seeds
  soft_violation_minutes                (c)'s minutes with a true CV beyond an operating limit, total over seeds
  no_proposal_share                     share of (c)'s slots without a proposal (all seeds pooled)
  coverage                              share of measured CV samples inside the twin's band (calibrated, widened by
                                        its recent errors as the recommender widens it, twins.adaptive; nominal
                                        `coverage_nominal`) 1, 5 and 20 steps after a solve of (c), on this
                                        optimizer-driven data (all CVs, solves with a proposal, seeds pooled):
                                        the twin's forecast from that solve's state over the setpoints applied since
                                        (later re-plans changed the plan) and the DVs measured, plus the CV bias
                                        and band the solve planned with; `coverage_by_h` per step ahead.
                                        `band_widened_share`: share of (c)'s solves whose band was widened.
  solve_p95_ms                          95th percentile of (c)'s solve times, all seeds pooled
  seeds                                 the seeds reported
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from bench import _true_models
from optimizer import CasadiModel, MpcController, MpcSettings, MpcSpec
from optimizer.estimation import BiasState, cv_bias_filter
from plantsim import heat_train, vdv_reactor
from plantsim.history import generate_history
from plantsim.realism import FaultRates, Realism
from plantsim.simulator import LineSimulator, build_simulator, make_line
from plantsim.spec import line_spec
from twins import DataSplit, Twin, TwinConfig, TwinDataset, export_arrays, split_by_time, train_twin
from twins.adaptive import band_scale, history_rows

CASES = ("vdv-reactor", "heat-train", "vdv-reactor-mismatch")
SEEDS = (31, 32, 33, 34, 35)  # reported
TUNING_SEEDS = (5, 11, 21)  # where TUNING may be chosen; never reported
HISTORY_SEED_OFFSET = 1000  # a seed's history is simulated with its own drift and noise, not the closed loop's
MISMATCH_K0_AB = 0.85  # the mismatch case's plant: A -> B rate constant x 0.85 after training
BAND_EVERY = 10  # samples between measurements of the adaptive band (over 120 samples it moves slowly; the
# recommender measures it once per proposal, every 300 s by default: 17 reactor or 30 heat-train samples)
COVERAGE_STEPS = (1, 5, 20)  # steps ahead the band is checked at (as the promotion gate's h1/h5/h20)
PLAN_OOD = 0.9 * 3.0  # the platform's default plan limit: 0.9 x the recommender's max OOD score
QUICK_TWIN: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 10, "eval_starts": 200, "val_windows": 64}
START = datetime(2026, 1, 1, tzinfo=UTC)  # history timestamps (unused by the twin)


@dataclass(frozen=True)
class Tuning:
    """The twin MPC's tuning; chosen on TUNING_SEEDS only (see `tune`)."""

    bias_alpha: float = 0.3  # CV bias filter gain per sample: ~3 samples' memory, noise damped, drift followed
    sqp_iterations: int = 30  # with the bias the CV limits bind; 15 left ~1 solve in 5 still moving
    cv_backoff: float = 0.25  # share of the calibrated one-step half-width kept inside soft CV limits


TUNING = Tuning()
# What `tune` compares by default: TUNING and one change at a time around it.
TUNING_GRID = (
    TUNING,
    dataclasses.replace(TUNING, bias_alpha=0.1),
    dataclasses.replace(TUNING, bias_alpha=1.0),
    dataclasses.replace(TUNING, sqp_iterations=15),
    dataclasses.replace(TUNING, cv_backoff=0.5),
)


@dataclass(frozen=True)
class Scenario:
    """Lengths of one closed-loop experiment."""

    hours: float = 4.0  # controlled operation after warm-up
    warmup_steps: int = 40  # nominal operation first: the encoder's window and a settled start
    history_days: float = 4.0  # simulated step-test history the twin is trained on (`twinops demo --days` default)


QUICK = Scenario(hours=0.25, history_days=1.0)


# ---------------------------------------------------------------- plants, references and twins


def plant(case: str, seed: int) -> LineSimulator:
    """Return the closed loop's plant: DV drift, sensor noise and actuator ramps, no sensor faults."""
    realism = Realism(faults=FaultRates(0.0, 0.0, 0.0))
    if case == "vdv-reactor-mismatch":
        p = vdv_reactor.VdvParameters()
        drifted = dataclasses.replace(p, k0_ab=p.k0_ab * MISMATCH_K0_AB)
        return LineSimulator(vdv_reactor.make_line(), vdv_reactor.VdvModel(drifted), seed=seed, realism=realism)
    return build_simulator(case, seed=seed, realism=realism)


def reference(sim: LineSimulator, scales: dict[str, np.ndarray]) -> tuple[CasadiModel, Callable[[], np.ndarray]]:
    """Return the plant's own equations as a CasADi model and a reader of its true state."""
    cvs, period = sim.line.names("CV"), sim.line.sample_period_s
    model = sim.model
    if isinstance(model, vdv_reactor.VdvModel):
        return _true_models.vdv_model(model.params, cvs, scales, period), lambda: _true_models.vdv_state(model)
    assert isinstance(model, heat_train.HeatTrainModel)
    return _true_models.heat_train_model(model.params, cvs, scales, period), lambda: _true_models.heat_train_state(
        model
    )


def train(
    line_id: str, seed: int, scenario: Scenario, config: TwinConfig, loop_records: Sequence[np.ndarray] = ()
) -> tuple[Twin, dict[str, Any]]:
    """Simulate the demo's kind of step-test history for this seed and train a twin on it, on CPU.

    `loop_records` (bench learning): closed-loop records (T, n_tags: CVs, MVs, DVs in the line's order, as
    closed_loop's `record` keeps them) that join the training block, each followed by a row with nothing measured;
    validation and test stay the history's last 30 %, so twins retrained on more records are checked on the same rows.
    """
    clock = time.perf_counter()
    history = generate_history(line_id, days=scenario.history_days, start=START, seed=HISTORY_SEED_OFFSET + seed)
    line, cols = history.line, {c: i for i, c in enumerate(history.columns)}
    names = (*line.names("CV"), *line.names("MV"), *line.names("DV"))
    values = history.values[:, [cols[n] for n in names]]
    split = with_records(split_by_time(_dataset(values, line)), values, loop_records, line)
    twin = train_twin(split, dataclasses.replace(config, seed=seed), device="cpu", cpu_threads=1)
    return twin, {"train_s": time.perf_counter() - clock, "setpoint_moves": history.setpoint_moves}


def with_records(split: DataSplit, values: np.ndarray, records: Sequence[np.ndarray], line: Any) -> DataSplit:
    """Return `split` (of `values`, T x n_tags) with each record added to its training block, then a gap row.

    The gap row holds the record's last inputs with no CV measured: the record and what follows are not one run.
    """
    if not records:
        return split
    n_cv, extra = len(line.names("CV")), []
    for record in records:
        gap = np.array(record[-1:], dtype=float)
        gap[:, :n_cv] = np.nan
        extra += [np.asarray(record, dtype=float), gap]
    added = np.concatenate(extra)
    values = np.concatenate([values[: split.train_stop], added, values[split.train_stop :]])
    return DataSplit(_dataset(values, line), split.train_stop + len(added), split.val_stop + len(added))


# ---------------------------------------------------------------- the loop


def closed_loop(
    sim: LineSimulator,
    scenario: Scenario,
    controller: MpcController | None = None,
    *,
    twin: Twin | None = None,
    state: Callable[[], np.ndarray] | None = None,
    tuning: Tuning = TUNING,
    record: list[list[float]] | None = None,
) -> dict[str, Any]:
    """Run one controller on sim: economics, limit excursions, proposals, coverage and solve times.

    `record`: a list that receives every measured row (CVs, MV setpoints, DVs), warm-up included: what the plant's
    historian would hold of this run.
    """
    line, dt = sim.line, sim.line.sample_period_s
    cvs, mvs, dvs = line.names("CV"), line.names("MV"), line.names("DV")
    tags = {t.name: t for t in line.tags}
    rows: list[list[float]] = []  # measured CVs, MV setpoints, measured DVs per sample (the encoder's input)
    for _ in range(scenario.warmup_steps):
        sample = sim.step(dt)
        rows.append([sample.values[n] for n in (*cvs, *mvs, *dvs)])
    steps = int(round(scenario.hours * 3600.0 / dt))
    value_eur, hard, soft_s, solve_ms, no_proposal = 0.0, 0, 0.0, [], 0
    reasons: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    by_cv = {name: {"minutes": 0.0, "max_excess": 0.0} for name in cvs}  # soft-limit excursions per CV
    # row index of each solve with a proposal (its state's last row) -> the CV bias and band it planned with
    planned: dict[int, tuple[dict[str, float] | None, dict[str, list[float]] | None]] = {}
    inside = {h: [0, 0] for h in COVERAGE_STEPS}  # h -> [inside, checked]
    bias: dict[str, float] | None = None
    band: dict[str, list[float]] | None = None  # the adaptive band, remeasured every BAND_EVERY samples
    widened = 0  # solves whose band was wider than calibrated somewhere
    for k in range(steps):
        if controller is not None:
            if twin is not None:
                z0, dv_now, bias = _estimate(twin, np.asarray(rows[-twin.state_rows :]), line, bias, tuning)
                if k % BAND_EVERY == 0:
                    band = _band(twin, rows, line, max(controller.settings.horizon, *COVERAGE_STEPS))
                widened += int(band is not None and max(max(v) for v in band.values()) > 1.0)
            else:
                assert state is not None
                z0, dv_now = state(), {n: sim.last.true[n] for n in dvs}
            result = controller.solve(z0=z0, mv=sim.setpoints, dv_forecast=dv_now, cv_bias=bias, band_scale=band)
            solve_ms.append((result.solve_time_s or 0.0) * 1e3)
            if result.has_proposal and result.first_setpoint is not None:
                for name, value in result.first_setpoint.items():
                    sim.write_setpoint(name, value)
                if result.fallback:
                    fallbacks[result.fallback] = fallbacks.get(result.fallback, 0) + 1
                if twin is not None:
                    planned[len(rows) - 1] = (bias, band)
            else:
                no_proposal += 1
                reasons[result.status.value] = reasons.get(result.status.value, 0) + 1
        sample = sim.step(dt)
        rows.append([sample.values[n] for n in (*cvs, *mvs, *dvs)])
        if twin is not None:
            _cover(twin, rows, line, planned, inside)
        true = {**sample.true, **sample.actuators}
        value_eur += sum(t.price * float(np.prod([true[n] for n in t.tags])) for t in line.objective_terms) * dt / 3600
        outside = False
        for name in cvs:
            v = true[name]
            low, high = tags[name].safety_limits or (None, None)
            hard += int((low is not None and v < low) or (high is not None and v > high))
            low, high = tags[name].limits or (None, None)
            excess = max(low - v if low is not None else 0.0, v - high if high is not None else 0.0)
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
    if record is not None:
        record.extend(rows)
    if controller is not None:
        out |= {
            "no_proposal": no_proposal,
            "no_proposal_share": no_proposal / steps,
            "no_proposal_reasons": reasons,
            "fallbacks": fallbacks,
            "solve_ms": solve_ms,  # pooled by the caller, then dropped
            "solve_median_ms": float(np.median(solve_ms)),
            "solve_p95_ms": float(np.percentile(solve_ms, 95)),
        }
    if twin is not None:
        out |= {
            "final_cv_bias": bias,
            "coverage_counts": {str(h): c for h, c in inside.items()},
            "band_widened_share": widened / steps,
        }
    return out


def _cover(
    twin: Twin,
    rows: list[list[float]],
    line: Any,
    planned: dict[int, tuple[dict[str, float] | None, dict[str, list[float]] | None]],
    inside: dict[int, list[int]],
) -> None:
    """Score the band of the solve max(COVERAGE_STEPS) samples ago against what was measured since.

    The forecast is the twin's from that solve's state over the setpoints actually applied since and the DVs measured
    (later re-plans changed the plan the solve drew), plus the CV bias it planned with; the band is the calibrated
    interval widened by the adaptive band it planned with: what the optimizer held the plan to, on the inputs that
    happened.
    """
    steps, window = max(COVERAGE_STEPS), twin.state_rows
    start = len(rows) - 1 - steps
    if start not in planned or start < window - 1:
        return
    bias, band = planned.pop(start)
    recent = _dataset(np.asarray(rows[start - window + 1 :]), line)
    fc = twin.predict(recent, np.array([window - 1]), steps, offset=False)  # the plan adds its bias instead
    for i, name in enumerate(twin.cv_names):
        for h in COVERAGE_STEPS:
            measured = rows[start + h][i]
            if not np.isfinite(measured):
                continue
            scale = band[name][min(h, len(band[name]) - 1)] if band else 1.0
            half = (fc.upper[0, h, i] - fc.lower[0, h, i]) / 2 * scale
            mean = fc.mean[0, h, i] + (bias or {}).get(name, 0.0)
            inside[h][0] += int(abs(measured - mean) <= half)
            inside[h][1] += 1


def _dataset(recent: np.ndarray, line: Any) -> TwinDataset:
    """Return rows (T, n_tags: CVs, MVs, DVs in the line's order) as the twin's dataset."""
    cvs, mvs, dvs = line.names("CV"), line.names("MV"), line.names("DV")
    n_cv, n_mv = len(cvs), len(mvs)
    return TwinDataset.from_arrays(
        cv=recent[:, :n_cv],
        mv=recent[:, n_cv : n_cv + n_mv],
        dv=recent[:, n_cv + n_mv :],
        cv_names=cvs,
        mv_names=mvs,
        dv_names=dvs,
        sample_period_s=line.sample_period_s,
    )


def _band(twin: Twin, rows: list[list[float]], line: Any, steps: int) -> dict[str, list[float]]:
    """Return the adaptive band (by CV, 0..steps ahead) from the recent rows, as the recommender measures it."""
    recent = np.asarray(rows[-history_rows(twin, steps=steps) :])
    scale = band_scale(twin, _dataset(recent, line), steps=steps)
    return {n: [float(v) for v in scale.scale[:, i]] for i, n in enumerate(twin.cv_names)}


def _estimate(
    twin: Twin, recent: np.ndarray, line: Any, bias: dict[str, float] | None, tuning: Tuning
) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Encode the latent from the recent window (W, n_tags); return it, the DVs now and the filtered CV bias."""
    cvs, mvs, dvs = line.names("CV"), line.names("MV"), line.names("DV")
    n_cv, n_mv = len(cvs), len(mvs)
    z0 = twin.initial_state(_dataset(recent, line))  # (M, nz)
    dv_now = {n: float(recent[-1, n_cv + n_mv + i]) for i, n in enumerate(dvs)}
    predicted = twin.readout(z0[:, None, :]).mean(axis=0)[0]  # (n_cv,) ensemble mean now
    # the recommender's filter (optimizer.estimation), one sample on from the last estimate; the loop starts from a
    # zero bias (the recommender's first proposal starts from the raw value instead: a sample's difference, no more)
    raw = recent[-1, :n_cv] - predicted
    last = np.array([(bias or {}).get(n, 0.0) for n in cvs])
    period = line.sample_period_s
    state = cv_bias_filter(
        raw[None, :],
        np.array([period]),
        BiasState(last, np.zeros(n_cv), np.zeros(n_cv, dtype=bool)),
        period_s=period,
        alpha=tuning.bias_alpha,
    )
    return z0, dv_now, {n: float(state.value[i]) for i, n in enumerate(cvs)}


# ---------------------------------------------------------------- one seed


def line_seed(line_id: str, seed: int, quick: bool, tuning: Tuning = TUNING) -> dict[str, dict[str, Any]]:
    """Train line_id's twin for this seed and run its case(s): hold, true-model MPC and twin MPC on each plant."""
    scenario = QUICK if quick else Scenario()
    twin, trained = train(line_id, seed, scenario, dataclasses.replace(TwinConfig(), **(QUICK_TWIN if quick else {})))
    print(f"closedloop {line_id} seed {seed}: twin trained in {trained['train_s']:.0f} s", file=sys.stderr, flush=True)
    meta, arrays = export_arrays(twin)
    cases = ("vdv-reactor", "vdv-reactor-mismatch") if line_id == vdv_reactor.LINE_ID else (line_id,)
    out = {}
    spec = MpcSpec.from_line_spec(line_spec(make_line(line_id)))
    for case in cases:
        horizon = min(30, twin.config.horizon)
        hold, runs = references(case, seed, scenario, spec, horizon, arrays)
        controller = MpcController.from_export(meta, arrays, spec, twin_settings(horizon, tuning))
        learned = closed_loop(plant(case, seed), scenario, controller, twin=twin, tuning=tuning)
        gain = {name: run["economic_eur"] - hold["economic_eur"] for name, run in (*runs.items(), ("twin", learned))}
        out[case] = {
            "gain_ratio": gain["twin"] / gain["model"] if gain["model"] > 0 else None,
            "gain_ratio_within_training_range": (
                gain["twin"] / gain["model_within_training_range"] if gain["model_within_training_range"] > 0 else None
            ),
            "hold": hold,
            **runs,
            "twin": learned,
            "twin_train": trained | {"last_val_cv": twin.info.history[-1].get("val_cv")},
            "mv_range": mv_range(meta, arrays),
            "coverage_nominal": twin.config.interval,
        }
    return out


def mv_range(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Return each MV's [low, high] over the data a twin (its export `meta`, `arrays`) was trained on."""
    return {
        n: [float(lo), float(hi)]
        for n, lo, hi in zip(meta["mv"], arrays["train/mv_min"], arrays["train/mv_max"], strict=True)
    }


def references(
    case: str,
    seed: int,
    scenario: Scenario,
    spec: MpcSpec,
    horizon: int,
    arrays: dict[str, np.ndarray],
    within_training_range: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Run the references on this case's plant: holding the nominal setpoints, and MPC on the plant's own equations
    within the line's MV limits (`model`) and, unless `within_training_range` is False, within the MV range the twin
    (its export `arrays`) was trained on (`model_within_training_range`)."""
    limits = {
        "cv_std": arrays["norm/cv_std"],
        "mv_std": arrays["norm/mv_std"],
        "mv_min": np.array([m.limits.low for m in spec.mvs]),
        "mv_max": np.array([m.limits.high for m in spec.mvs]),
    }
    trained_range = {**limits, "mv_min": arrays["train/mv_min"], "mv_max": arrays["train/mv_max"]}
    hold = closed_loop(plant(case, seed), scenario)
    runs = {}
    cases = (("model", limits), ("model_within_training_range", trained_range))
    for name, scales in cases if within_training_range else cases[:1]:
        sim = plant(case, seed)
        model, state = reference(sim, scales)
        # Far moves from a cold start need more linearisations than the twin's budget.
        controller = MpcController(model, spec, MpcSettings(horizon=horizon, sqp_iterations=60))
        runs[name] = closed_loop(sim, scenario, controller, state=state)
    return hold, runs


def twin_settings(horizon: int, tuning: Tuning = TUNING, trust_margin: float = 0.0) -> MpcSettings:
    """Return the twin MPC's settings: the platform's plan OOD limit, the tuning, MVs within the trained range
    widened by `trust_margin` of its width (0: the platform's default)."""
    return MpcSettings(
        horizon=horizon,
        max_plan_ood=PLAN_OOD,
        sqp_iterations=tuning.sqp_iterations,
        cv_backoff=tuning.cv_backoff,
        trust_region_margin=trust_margin,
    )


def pooled(ratios: list[float | None], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the figures every closed-loop bench reports over seeds: the gain ratios' median and worst (None if any
    seed has none), and the twin loops' (`runs`) violations, share of slots without a proposal and pooled coverage."""
    finite = [r for r in ratios if r is not None and np.isfinite(r)]
    counts = [c for r in runs for c in r["coverage_counts"].values()]
    checked = sum(int(c[1]) for c in counts)
    return {
        "gain_ratio_median": float(np.median(finite)) if len(finite) == len(ratios) else None,
        "gain_ratio_worst": float(min(finite)) if len(finite) == len(ratios) else None,
        "hard_violations": sum(r["hard_violations"] for r in runs),
        "soft_violation_minutes": sum(r["soft_violation_minutes"] for r in runs),
        "no_proposal_share": sum(r["no_proposal"] for r in runs) / sum(r["steps"] for r in runs),
        "coverage": sum(int(c[0]) for c in counts) / checked if checked else None,
    }


def summary(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Return a case's figures over its seeds, each seed's detail under `per_seed`."""
    runs = [d["twin"] for d in per_seed.values()]
    counts = {h: np.sum([r["coverage_counts"][h] for r in runs], axis=0) for h in map(str, COVERAGE_STEPS)}
    solve_ms = np.concatenate([r.pop("solve_ms") for r in runs])
    for d in per_seed.values():
        for name in ("model", "model_within_training_range"):
            d[name].pop("solve_ms")
    slots = sum(r["steps"] for r in runs)
    return {
        **pooled([d["gain_ratio"] for d in per_seed.values()], runs),
        "coverage_by_h": {h: int(c[0]) / int(c[1]) if c[1] else None for h, c in counts.items()},
        "coverage_nominal": next(iter(per_seed.values()))["coverage_nominal"],
        "band_widened_share": sum(r["band_widened_share"] * r["steps"] for r in runs) / slots,
        "solve_p95_ms": float(np.percentile(solve_ms, 95)),
        "model_hard_violations": sum(d["model"]["hard_violations"] for d in per_seed.values()),
        "seeds": list(per_seed),
        "per_seed": {str(s): d for s, d in per_seed.items()},
    }


# ---------------------------------------------------------------- run and tune


def run(
    *,
    quick: bool = False,
    seeds: Sequence[int] = SEEDS,
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    tuning: Tuning = TUNING,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run every case over the reported seeds; return one object per case (quick: the first seed, short runs).

    Each (line, seed) trains its own twin in a process of its own; `jobs` processes at once (default env
    TWINOPS_BENCH_CLOSEDLOOP_JOBS, else one per core).
    """
    clock = time.perf_counter()
    seeds = list(seeds)[:1] if quick else list(seeds)
    if set(seeds) & set(tuning_seeds):
        raise ValueError(f"tuning seeds {sorted(set(seeds) & set(tuning_seeds))} are also reported seeds")
    per_case = _seeds(seeds, quick, tuning, jobs)
    out: dict[str, Any] = {case: summary(per_case[case]) for case in CASES}
    return out | {
        "quick": quick,
        "tuning": dataclasses.asdict(tuning),
        "tuning_seeds": list(tuning_seeds),
        "scenario": dataclasses.asdict(QUICK if quick else Scenario()),
        "mismatch": {"k0_ab": MISMATCH_K0_AB},
        "run_s": time.perf_counter() - clock,
    }


def tune(
    candidates: Sequence[Tuning] = TUNING_GRID,
    *,
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    seeds: Sequence[int] = SEEDS,
    quick: bool = False,
) -> dict[str, Any]:
    """Score candidate tunings on the tuning seeds only (gain ratios, soft minutes, no-proposal share per case)."""
    if set(seeds) & set(tuning_seeds):
        raise ValueError(f"reported seeds {sorted(set(seeds) & set(tuning_seeds))} may not be tuned on")
    scores = []
    for tuning in candidates:
        per_case = _seeds(list(tuning_seeds), quick, tuning, None)
        scores.append({"tuning": dataclasses.asdict(tuning)} | {c: _brief(per_case[c]) for c in CASES})
    return {"tuning_seeds": list(tuning_seeds), "candidates": scores}


def _brief(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    s = summary(per_seed)
    return {k: s[k] for k in ("gain_ratio_median", "gain_ratio_worst", "soft_violation_minutes", "no_proposal_share")}


def _seeds(seeds: list[int], quick: bool, tuning: Tuning, jobs: int | None) -> dict[str, dict[int, dict[str, Any]]]:
    """Run line_seed for both lines and every seed, in worker processes; return case -> seed -> detail."""
    jobs = jobs or int(os.environ.get("TWINOPS_BENCH_CLOSEDLOOP_JOBS", "0")) or os.cpu_count() or 1
    units = [(line_id, s) for s in seeds for line_id in (vdv_reactor.LINE_ID, heat_train.LINE_ID)]
    per_case: dict[str, dict[int, dict[str, Any]]] = {case: {} for case in CASES}

    def note(seed: int, result: dict[str, dict[str, Any]]) -> None:
        for case, detail in result.items():
            per_case[case][seed] = detail
            print(f"closedloop {case} seed {seed}: gain ratio {detail['gain_ratio']}", file=sys.stderr, flush=True)

    if jobs == 1:
        for line_id, s in units:
            note(s, line_seed(line_id, s, quick, tuning))
        return per_case
    # spawn, not fork: a forked child of a process that has run OpenMP code can hang in its first parallel region.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init) as pool:
        futures = {unit: pool.submit(line_seed, *unit, quick, tuning) for unit in units}
        for (_, s), future in futures.items():
            note(s, future.result())
    return per_case


def _worker_init() -> None:
    # One torch thread per worker: the pool already uses every core, and two OpenMP threads per core stall each other.
    torch.set_num_threads(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, short runs, a barely trained twin")
    parser.add_argument("--tune", action="store_true", help="score TUNING_GRID on the tuning seeds instead")
    args = parser.parse_args()
    print(json.dumps(tune(quick=args.quick) if args.tune else run(quick=args.quick), indent=2))
