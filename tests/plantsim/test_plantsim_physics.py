"""Simulator behaviour: determinism, published reference, balances, dead time, actuator limits, drift."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from plantsim import Realism, build_simulator
from plantsim.heat_train import HeatTrainParameters
from plantsim.vdv_reactor import VdvModel, VdvParameters, rates

DOMPC = Path(__file__).resolve().parents[3] / "shared" / "data" / "dompc_reference" / "results_CSTR_simulator.csv"


@pytest.mark.parametrize("line_id", ["vdv-reactor", "heat-train"])
def test_the_same_seed_gives_the_same_samples_and_another_seed_does_not(line_id: str) -> None:
    def run(seed: int) -> list[dict[str, float]]:
        sim = build_simulator(line_id, seed=seed)
        mv = sim.line.names("MV")[0]
        out = []
        for k in range(300):
            if k == 100:
                sim.write_setpoint(mv, sim.line.mv_tuning[mv].test_band[1])
            out.append(sim.step(sim.line.sample_period_s).values)
        return out

    first, again, other = run(3), run(3), run(4)
    assert np.array_equal(
        np.array([list(v.values()) for v in first]), np.array([list(v.values()) for v in again]), equal_nan=True
    )
    assert first != other


@pytest.mark.skipif(not DOMPC.is_file(), reason="do-mpc reference data not available")
def test_the_reactor_reproduces_do_mpc_reference_trajectory() -> None:
    rows = list(csv.DictReader(DOMPC.open()))
    states = ["x_C_a", "x_C_b", "x_T_R", "x_T_K"]
    model = VdvModel()
    for now, nxt in zip(rows, rows[1:], strict=False):
        model.x = tuple(float(now[k]) for k in states)
        model.advance((float(now["u_F"]), float(now["u_Q_dot"])), (5.1, 130.0), dt_s=18.0)
        expected = [float(nxt[k]) for k in states]
        assert model.x == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(("feed", "q_dot"), [(18.0, -4500.0), (10.0, -7000.0), (25.0, -3500.0)])
def test_reactor_mass_and_energy_balances_close_at_steady_state(feed: float, q_dot: float) -> None:
    sim = build_simulator("vdv-reactor", realism=Realism.ideal())
    sim.write_setpoint("F", feed)
    sim.write_setpoint("Q_dot", q_dot)
    for _ in range(3 * 200):  # 3 h of process time at 18 s samples: many residence times
        sample = sim.step(18.0)
    p = VdvParameters()
    t = sample.true
    c_a, c_b, t_r, t_k, c_a0, t_in = t["C_a"], t["C_b"], t["T_R"], t["T_K"], t["C_A0"], t["T_in"]
    r1, r2, r3 = rates(p, c_a, c_b, t_r)  # mol/(l h)
    # A-atom balance over the outlet: A fed = A + B + C + 2 D leaving (C and D from their own species balances)
    c_c, c_d = r2 / feed, r3 / (2.0 * feed)
    assert c_a + c_b + c_c + 2.0 * c_d == pytest.approx(c_a0, rel=1e-6)
    # species balances in mol/h: in - out + generation = 0
    assert feed * p.v_r * (c_a0 - c_a) == pytest.approx(p.v_r * (r1 + r3), rel=1e-6)
    assert p.v_r * (r1 - r2) == pytest.approx(feed * p.v_r * c_b, rel=1e-6)
    # reactor energy balance in kJ/h: sensible heat of the feed + heat of reaction + heat from the jacket = 0
    sensible = p.rho * p.c_p * p.v_r * feed * (t_in - t_r)
    reaction = -p.v_r * (r1 * p.dh_ab + r2 * p.dh_bc + r3 * p.dh_ad)
    jacket = p.k_w * p.a_r * (t_k - t_r)
    assert abs(sensible + reaction + jacket) < 1e-6 * max(abs(sensible), abs(reaction), abs(jacket))
    # jacket energy balance: the heat removed equals the heat crossing the wall
    assert q_dot == pytest.approx(-p.k_w * p.a_r * (t_r - t_k), rel=1e-6)


def test_heat_train_energy_balance_closes_at_steady_state() -> None:
    sim = build_simulator("heat-train", realism=Realism.ideal())
    for _ in range(720):  # 2 h
        sample = sim.step(10.0)
    p = HeatTrainParameters()
    t, u = sample.true, sample.actuators
    mcp = p.rho_p * p.cp_p * u["F_feed"] / 3600.0  # kW/K
    absorbed = mcp * (t["T_out"] - t["T_feed"])
    oil_duty = p.rho_h * p.cp_h * u["F_oil"] / 3600.0 * (t["T_oil_sup"] - t["T_oil_ret"])
    steam_duty = u["m_steam"] * p.h_fg / 3600.0  # all steam condenses at this duty
    line_loss = mcp * (t["T_E1_out"] - t["T_E2_in"])
    assert absorbed == pytest.approx(oil_duty + steam_duty + p.eta_fired * u["Q_fired"] - line_loss, rel=1e-6)


def test_heat_train_transfer_line_delays_the_steam_heater_inlet_by_its_volume_over_the_flow() -> None:
    sim = build_simulator("heat-train", realism=Realism.ideal())
    before = sim.last.true["T_E2_in"]
    sim.write_setpoint("F_oil", 25.0)  # E1 outlet starts rising within the first sample
    dead_time_s = HeatTrainParameters().v_pipe / (20.0 / 3600.0)  # 180 s at the nominal 20 m3/h
    history = [sim.step(5.0).true for _ in range(80)]
    e1 = [h["T_E1_out"] for h in history]
    e2_in = [h["T_E2_in"] for h in history]
    assert e1[1] - e1[0] > 0.0
    still = int(dead_time_s // 5.0) - 1
    assert max(abs(v - before) for v in e2_in[:still]) < 1e-3
    assert e2_in[-1] - before > 5.0


def test_actuators_ramp_at_their_rate_limit_and_setpoints_are_clamped_to_limits() -> None:
    sim = build_simulator("vdv-reactor", realism=Realism.ideal())
    assert sim.write_setpoint("F", 500.0) == 100.0
    sim.write_setpoint("F", 30.0)
    positions = [sim.step(18.0).actuators["F"] for _ in range(6)]
    ramp = 10.0 / 60.0 * 18.0  # 10 (1/h) per minute over 18 s
    assert np.diff([18.0, *positions])[:4] == pytest.approx([ramp] * 4)
    assert positions[-1] == pytest.approx(30.0)
    with pytest.raises(KeyError):
        sim.write_setpoint("C_b", 1.0)


def test_disturbances_drift_slowly_and_stay_within_their_bounds() -> None:
    sim = build_simulator("vdv-reactor", seed=11, realism=Realism(noise_scale=0.0, faults=Realism.ideal().faults))
    c_a0 = np.array([sim.step(18.0).true["C_A0"] for _ in range(2 * 4800)])  # 2 days
    assert c_a0.min() >= 4.5 and c_a0.max() <= 5.7
    assert c_a0.std() > 0.03
    lag1 = np.corrcoef(c_a0[:-1], c_a0[1:])[0, 1]
    assert lag1 > 0.99
    assert all(math.isfinite(v) for v in c_a0)
