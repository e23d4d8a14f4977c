"""Feed preheat train: hot-oil exchanger, insulated transfer line (plug-flow dead time), steam heater, fired heater.

Lumped energy balances in kJ, kW (= kJ/s) and seconds; see plantsim/README.md for the equations and constants.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from plantsim.line import Drift, Line, MvTuning, ObjectiveTerm, Role, Tag, Target

LINE_ID = "heat-train"
STATES = ("T_E1_out", "T_oil_ret", "T_E2_out", "T_E2_wall", "T_out", "T_skin", "Q_abs")
MVS = ("F_feed", "F_oil", "m_steam", "Q_fired")
DVS = ("T_feed", "T_oil_sup")
CVS = ("T_E1_out", "T_oil_ret", "T_E2_in", "T_E2_out", "T_skin", "T_out")


@dataclass(frozen=True)
class HeatTrainParameters:
    """Physical constants of the train (nominal design point: 20 m3/h heated from 40 to 180 degC)."""

    rho_p: float = 850.0  # kg/m3, process fluid (light gas oil)
    cp_p: float = 2.1  # kJ/(kg K)
    rho_h: float = 870.0  # kg/m3, hot oil
    cp_h: float = 2.3  # kJ/(kg K)
    v_e1: float = 0.4  # m3, process hold-up in E1 (one mixed cell)
    v_oil: float = 0.3  # m3, hot-oil hold-up in E1
    ua_e1: float = 12.0  # kW/K at design flows
    v_pipe: float = 1.0  # m3, transfer line volume: dead time = v_pipe / F_feed (180 s at 20 m3/h)
    ua_pipe: float = 0.15  # kW/K, insulated line to ambient
    t_amb: float = 20.0  # degC
    v_e2: float = 0.3  # m3, process hold-up in E2
    c_wall_e2: float = 600.0  # kJ/K, E2 tube bundle (1200 kg steel)
    ua_e2: float = 20.0  # kW/K wall -> process at design flow
    ua_steam: float = 40.0  # kW/K condensing steam -> wall
    t_sat: float = 184.0  # degC, saturation temperature of the 10 barg steam header
    h_fg: float = 2000.0  # kJ/kg, latent heat at 10 barg
    v_h3: float = 0.6  # m3, process hold-up in the fired-heater coil
    c_wall_h3: float = 1500.0  # kJ/K, coil metal (3000 kg steel)
    ua_h3: float = 5.0  # kW/K tube skin -> process at design flow
    eta_fired: float = 0.9  # fraction of fired duty absorbed by the coil
    tau_burner: float = 45.0  # s, burner / fuel-valve lag
    f_design: float = 20.0  # m3/h, process flow at which ua_* hold
    f_oil_design: float = 15.0  # m3/h


class HeatTrainModel:
    """Deterministic train state with an `advance` verb; the transfer line keeps its own plug-flow history."""

    max_step_s = 2.0  # RK4 internal step; fastest time constant is about 10 s

    def __init__(self, params: HeatTrainParameters | None = None) -> None:
        self.params = params or HeatTrainParameters()
        self.x: list[float] = [100.0, 150.0, 138.0, 157.0, 178.0, 260.0, 400.0]
        self.time_s = 0.0
        self._vol: list[float] = []  # cumulative volume entered into the line, m3
        self._temp: list[float] = []  # temperature of the fluid that entered then, degC
        self._when: list[float] = []  # model time it entered, s
        self._cum_vol = 0.0
        self.t_e2_in = 0.0
        self._fill_line(self.x[0], self.params.f_design)

    def _fill_line(self, temp: float, f_m3_h: float) -> None:
        """Fill the transfer line with fluid at temp that entered at steady flow f_m3_h."""
        transit_s = self.params.v_pipe / max(f_m3_h, 1e-3) * 3600.0
        self._vol = [self._cum_vol - self.params.v_pipe, self._cum_vol]
        self._temp = [temp, temp]
        self._when = [self.time_s - transit_s, self.time_s]
        self.t_e2_in = self._line_outlet()

    def reset(self, u: Sequence[float], d: Sequence[float]) -> None:
        """Start at the steady state for inputs u and disturbances d."""
        for _ in range(3):  # the line's outlet depends on T_E1_out; settle, refill, settle again
            c = self.coefficients(u, d)
            for _ in range(1800):
                self._rk4(c, self.max_step_s)
            self._fill_line(self.x[0], u[0])

    def advance(self, u: Sequence[float], d: Sequence[float], dt_s: float) -> None:
        """Integrate dt_s seconds with u and d held constant."""
        n = max(1, math.ceil(dt_s / self.max_step_s - 1e-9))
        h = dt_s / n
        f_m3_s = max(u[0], 0.0) / 3600.0
        c = self.coefficients(u, d)
        for _ in range(n):
            self.t_e2_in = self._line_outlet()
            self._rk4(c, h)
            self.time_s += h
            self._cum_vol += f_m3_s * h
            self._vol.append(self._cum_vol)
            self._temp.append(self.x[0])
            self._when.append(self.time_s)
        self.t_e2_in = self._line_outlet()
        self._prune()

    def outputs(self) -> dict[str, float]:
        """Return the true CVs by tag name."""
        x = self.x
        return {
            "T_E1_out": x[0],
            "T_oil_ret": x[1],
            "T_E2_in": self.t_e2_in,
            "T_E2_out": x[2],
            "T_skin": x[5],
            "T_out": x[4],
        }

    def line_temperatures(self, cells: int) -> list[float]:
        """Return the temperature at the middle of each of `cells` equal volumes of the transfer line, inlet first."""
        width = self.params.v_pipe / cells
        return [self._line_temperature(self._cum_vol - (i + 0.5) * width) for i in range(cells)]

    def _line_outlet(self) -> float:
        """Temperature leaving the transfer line: plug flow from V_cum - V_pipe, cooled on its way."""
        return self._line_temperature(self._cum_vol - self.params.v_pipe)

    def _line_temperature(self, v_out: float) -> float:
        """Temperature of the fluid at cumulative volume v_out in the line: as it entered, cooled since."""
        p = self.params
        i = bisect.bisect_right(self._vol, v_out)
        i = min(max(i, 1), len(self._vol) - 1)
        v0, v1 = self._vol[i - 1], self._vol[i]
        w = 0.0 if v1 <= v0 else min(max((v_out - v0) / (v1 - v0), 0.0), 1.0)
        t_in = self._temp[i - 1] + w * (self._temp[i] - self._temp[i - 1])
        entered = self._when[i - 1] + w * (self._when[i] - self._when[i - 1])
        residence_s = min(self.time_s - entered, 1e6)
        c_line = p.rho_p * p.cp_p * p.v_pipe  # kJ/K
        return p.t_amb + (t_in - p.t_amb) * math.exp(-p.ua_pipe * residence_s / c_line)

    def _prune(self) -> None:
        v_out = self._cum_vol - self.params.v_pipe
        i = bisect.bisect_right(self._vol, v_out) - 2
        if i > 256:
            del self._vol[:i], self._temp[:i], self._when[:i]

    def _rk4(self, c: Sequence[float], h: float) -> None:
        x = self.x
        k1 = self.derivatives(x, c)
        k2 = self.derivatives([a + 0.5 * h * b for a, b in zip(x, k1, strict=True)], c)
        k3 = self.derivatives([a + 0.5 * h * b for a, b in zip(x, k2, strict=True)], c)
        k4 = self.derivatives([a + h * b for a, b in zip(x, k3, strict=True)], c)
        self.x = [a + h / 6.0 * (p + 2 * q + 2 * r + s) for a, p, q, r, s in zip(x, k1, k2, k3, k4, strict=True)]

    def coefficients(self, u: Sequence[float], d: Sequence[float]) -> tuple[float, ...]:
        """Return the input-dependent rate coefficients (1/s, K/s) of the energy balances."""
        p = self.params
        f_feed, f_oil, m_steam, q_fired = (v if v > 0.0 else 0.0 for v in u)
        t_feed, t_oil_sup = d
        mcp_p = p.rho_p * p.cp_p * f_feed / 3600.0  # kW/K
        mcp_h = p.rho_h * p.cp_h * f_oil / 3600.0
        # film coefficients scale with velocity^0.8 (Dittus-Boelter); E1 has a film on each side in series
        rp = (max(f_feed, 1e-3) / p.f_design) ** 0.8
        rh = (max(f_oil, 1e-3) / p.f_oil_design) ** 0.8
        ua1 = p.ua_e1 / (0.5 / rp + 0.5 / rh)
        c_e1, c_oil = p.rho_p * p.cp_p * p.v_e1, p.rho_h * p.cp_h * p.v_oil  # kJ/K
        c_e2, c_h3 = p.rho_p * p.cp_p * p.v_e2, p.rho_p * p.cp_p * p.v_h3
        return (
            mcp_p / c_e1,
            ua1 / c_e1,
            t_feed,  # E1 process side
            mcp_h / c_oil,
            ua1 / c_oil,
            t_oil_sup,  # E1 hot-oil side
            m_steam * p.h_fg / 3600.0,
            p.ua_steam,
            p.t_sat,
            p.ua_e2 * rp,
            p.c_wall_e2,  # E2 steam side and wall
            mcp_p / c_e2,
            p.ua_e2 * rp / c_e2,  # E2 process side
            p.eta_fired * q_fired,
            p.tau_burner,
            p.ua_h3 * rp,
            p.c_wall_h3,  # fired heater coil
            mcp_p / c_h3,
            p.ua_h3 * rp / c_h3,  # fired heater process side
        )

    def derivatives(self, x: Sequence[float], c: Sequence[float]) -> list[float]:
        """Return dx/dt per second, with the transfer-line outlet held at its current value."""
        t1, t_oil, t2, tw2, t3, tw3, q_abs = x
        (
            a1,
            b1,
            t_feed,
            a2,
            b2,
            t_sup,
            q_steam_max,
            ua_s,
            t_sat,
            ua2,
            cw2,
            a3,
            b3,
            q_fired_abs,
            tau,
            ua3,
            cw3,
            a4,
            b4,
        ) = c
        drive = t_sat - tw2
        q_steam = min(q_steam_max, ua_s * drive) if drive > 0.0 else 0.0  # condensation-limited steam duty, kW
        return [
            a1 * (t_feed - t1) + b1 * (t_oil - t1),
            a2 * (t_sup - t_oil) - b2 * (t_oil - t1),
            a3 * (self.t_e2_in - t2) + b3 * (tw2 - t2),
            (q_steam - ua2 * (tw2 - t2)) / cw2,
            a4 * (t2 - t3) + b4 * (tw3 - t3),
            (q_abs - ua3 * (tw3 - t3)) / cw3,
            (q_fired_abs - q_abs) / tau,
        ]


def make_line() -> Line:
    """Describe the heat-train line: tags, limits, tuning, drift, objective."""
    cv: Role = "CV"
    dv: Role = "DV"
    mv: Role = "MV"
    temp_range = (-20.0, 500.0)
    tags = (
        Tag(
            "T_out",
            cv,
            "degC",
            "Train outlet temperature (product spec)",
            temp_range,
            limits=(170.0, 190.0),
            safety_limits=(None, 230.0),
            noise_std=0.15,
        ),
        Tag(
            "T_skin",
            cv,
            "degC",
            "Fired-heater tube skin temperature",
            temp_range,
            limits=(None, 380.0),
            safety_limits=(None, 420.0),
            noise_std=0.3,
        ),
        Tag("T_E1_out", cv, "degC", "Process outlet of hot-oil exchanger E1", temp_range, noise_std=0.15),
        Tag(
            "T_oil_ret",
            cv,
            "degC",
            "Hot-oil return temperature from E1",
            temp_range,
            limits=(None, 200.0),
            noise_std=0.15,
        ),
        Tag(
            "T_E2_in",
            cv,
            "degC",
            "Steam heater E2 inlet, after the transfer line (dead time)",
            temp_range,
            noise_std=0.15,
        ),
        Tag("T_E2_out", cv, "degC", "Process outlet of steam heater E2", temp_range, noise_std=0.15),
        Tag("T_feed", dv, "degC", "Feed temperature from tankage", temp_range, noise_std=0.15),
        Tag("T_oil_sup", dv, "degC", "Hot-oil supply temperature (shared utility)", temp_range, noise_std=0.15),
        Tag("F_feed", mv, "m3/h", "Process throughput setpoint", (0.0, 40.0), limits=(12.0, 30.0)),
        Tag("F_oil", mv, "m3/h", "Hot-oil flow setpoint to E1", (0.0, 40.0), limits=(3.0, 30.0)),
        Tag("m_steam", mv, "kg/h", "10 barg steam flow setpoint to E2", (0.0, 2000.0), limits=(0.0, 1500.0)),
        Tag("Q_fired", mv, "kW", "Fired-heater duty setpoint (fuel)", (0.0, 1200.0), limits=(0.0, 900.0)),
    )
    return Line(
        id=LINE_ID,
        name="Feed preheat train",
        site="Demo site",
        area="Utilities",
        sample_period_s=10.0,
        tags=tuple(t.with_node(f"ns=2;s={LINE_ID}.{t.name}") for t in tags),
        mv_tuning={
            "F_feed": MvTuning(
                nominal=20.0, safe=16.0, test_band=(16.0, 24.0), max_move_per_step=1.0, ramp_per_min=2.0
            ),
            "F_oil": MvTuning(nominal=15.0, safe=15.0, test_band=(10.0, 21.0), max_move_per_step=2.0, ramp_per_min=5.0),
            "m_steam": MvTuning(
                nominal=700.0, safe=600.0, test_band=(450.0, 950.0), max_move_per_step=100.0, ramp_per_min=200.0
            ),
            "Q_fired": MvTuning(
                nominal=450.0, safe=300.0, test_band=(350.0, 560.0), max_move_per_step=50.0, ramp_per_min=100.0
            ),
        },
        dv_drift={
            "T_feed": Drift(mean=40.0, std=4.0, time_constant_s=4 * 3600.0, bounds=(25.0, 55.0)),
            "T_oil_sup": Drift(mean=220.0, std=5.0, time_constant_s=2 * 3600.0, bounds=(200.0, 240.0)),
        },
        objective_terms=(
            ObjectiveTerm(("F_feed",), 6.0, "heated product, EUR/m3"),
            ObjectiveTerm(("Q_fired",), -0.04, "fuel, EUR/kWh"),
            ObjectiveTerm(("m_steam",), -0.025, "steam, EUR/kg"),
            ObjectiveTerm(("F_oil",), -0.3, "hot-oil circulation and heat, EUR/m3"),
        ),
        targets=(Target("T_out", 180.0, 1.0),),
        description="Preheat of a gas-oil stream: hot-oil exchanger, 1 m3 transfer line, steam heater, fired heater.",
    )
