"""Measurement chain: noise, and dropout / stuck / spike faults at the configured rates."""

from __future__ import annotations

import math

import numpy as np

from plantsim import FaultRates, Realism, build_simulator

RATES = FaultRates(dropout_per_h=2.0, stuck_per_h=1.0, spike_per_h=4.0, dropout_mean_s=180.0, stuck_mean_s=300.0)


def test_sensor_faults_appear_at_the_configured_rates_and_look_like_their_kind() -> None:
    sim = build_simulator("vdv-reactor", seed=5, realism=Realism(faults=RATES))
    dt = sim.line.sample_period_s
    measured = [t.name for t in sim.line.tags if t.role != "MV"]
    idle_s = dict.fromkeys(measured, 0.0)
    last_clean = dict(sim.last.values)  # a stuck sensor freezes at its last fault-free reading
    dropout_samples = stuck_samples = spikes = 0
    for _ in range(2 * 4800):  # 2 simulated days
        before = dict(sim.sensors.active)
        sample = sim.step(dt)
        for name in measured:
            if before[name] in (None, "spike"):
                idle_s[name] += dt  # a new fault can only start on an idle sensor
            kind, value, true = sample.faults[name], sample.values[name], sample.true[name]
            if kind == "dropout":
                dropout_samples += 1
                assert math.isnan(value)
            elif kind == "stuck":
                stuck_samples += 1
                assert value == last_clean[name]
            elif kind == "spike":
                spikes += 1
                span = sim.line.tag(name).physical_range[1] - sim.line.tag(name).physical_range[0]
                assert abs(value - true) > 0.02 * span
            else:
                assert math.isfinite(value)
                last_clean[name] = value
    idle_h = sum(idle_s.values()) / 3600.0
    for kind, rate in (("dropout", RATES.dropout_per_h), ("stuck", RATES.stuck_per_h), ("spike", RATES.spike_per_h)):
        starts = sum(sim.sensors.fault_starts[n][kind] for n in measured)
        expected = rate * idle_h
        assert abs(starts - expected) < 4 * math.sqrt(expected), (kind, starts, expected)
    mean_dropout_s = dropout_samples * dt / sum(sim.sensors.fault_starts[n]["dropout"] for n in measured)
    assert 0.7 * RATES.dropout_mean_s < mean_dropout_s < 1.4 * RATES.dropout_mean_s + dt
    assert stuck_samples > 0 and spikes > 0


def test_an_ideal_plant_measures_exact_values_and_a_noisy_one_scatters_by_the_tag_noise() -> None:
    ideal = build_simulator("heat-train", realism=Realism.ideal())
    sample = ideal.step(10.0)
    assert all(sample.values[n] == sample.true[n] for n in sample.true)

    noisy = build_simulator("heat-train", seed=2, realism=Realism(faults=FaultRates(0.0, 0.0, 0.0)))
    errors = np.array([(s.values["T_out"] - s.true["T_out"]) for s in (noisy.step(10.0) for _ in range(3000))])
    assert abs(errors.std() - noisy.line.tag("T_out").noise_std) < 0.01
    assert abs(errors.mean()) < 0.02
