"""The simulated lines' own equations in CasADi, for bench closedloop's reference MPC ("the true model").

The reactor is exact (plantsim.vdv_reactor, same RK4 sub-steps). The heat train is exact except its transfer line:
plantsim moves the fluid as plug flow with a flow-dependent dead time, which has no finite state; here it is
LINE_CELLS mixed cells in series (same volume, so the same mean residence time at any flow, and the same heat loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import casadi as ca
import numpy as np

from optimizer import CasadiModel
from plantsim import heat_train, vdv_reactor

LINE_CELLS = 18  # transfer-line cells: 10 s each at design flow (dead time 180 s), the sample period


def _rk4(rhs: Callable[[Any], Any], x: Any, h: float, steps: int) -> Any:
    """Return x after `steps` classical Runge-Kutta steps of h (inputs held, as in plantsim)."""
    for _ in range(steps):
        k1 = rhs(x)
        k2 = rhs(x + 0.5 * h * k1)
        k3 = rhs(x + 0.5 * h * k2)
        k4 = rhs(x + h * k3)
        x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def vdv_model(
    p: vdv_reactor.VdvParameters, cvs: tuple[str, ...], scales: dict[str, np.ndarray], period_s: float
) -> CasadiModel:
    """Return the Van de Vusse equations with parameters p as a CasADi model stepping one sample period."""
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
    x_next = _rk4(rhs, x, period_s / 3600.0 / steps, steps)  # hours inside the model
    y = ca.vertcat(*[x[vdv_reactor.STATES.index(n)] for n in cvs])
    return _model(cvs, vdv_reactor.MVS, vdv_reactor.DVS, period_s, (x, u, d, x_next, y), scales)


def vdv_state(model: vdv_reactor.VdvModel) -> np.ndarray:
    """Return the reactor's true state as the reference model's latent (1, nx)."""
    return np.asarray(model.x, dtype=float)[None, :]


def heat_train_model(
    p: heat_train.HeatTrainParameters, cvs: tuple[str, ...], scales: dict[str, np.ndarray], period_s: float
) -> CasadiModel:
    """Return the heat train's energy balances as a CasADi model (transfer line as LINE_CELLS mixed cells)."""
    nx = len(heat_train.STATES) + LINE_CELLS
    x, u, d = ca.SX.sym("x", nx), ca.SX.sym("u", 4), ca.SX.sym("d", 2)
    f_feed, f_oil, m_steam, q_fired = (ca.fmax(u[i], 0.0) for i in range(4))
    t_feed, t_sup = d[0], d[1]
    mcp_p = p.rho_p * p.cp_p * f_feed / 3600.0  # kW/K
    mcp_h = p.rho_h * p.cp_h * f_oil / 3600.0
    rp = (ca.fmax(f_feed, 1e-3) / p.f_design) ** 0.8  # film coefficients ~ velocity^0.8, as plantsim
    rh = (ca.fmax(f_oil, 1e-3) / p.f_oil_design) ** 0.8
    ua1 = p.ua_e1 / (0.5 / rp + 0.5 / rh)
    c_e1, c_oil = p.rho_p * p.cp_p * p.v_e1, p.rho_h * p.cp_h * p.v_oil  # kJ/K
    c_e2, c_h3 = p.rho_p * p.cp_p * p.v_e2, p.rho_p * p.cp_p * p.v_h3
    c_line = p.rho_p * p.cp_p * p.v_pipe
    q_steam_max = m_steam * p.h_fg / 3600.0

    def rhs(x: Any) -> Any:
        t1, t_oil, t2, tw2, t3, tw3, q_abs = (x[i] for i in range(7))
        cells = [x[7 + i] for i in range(LINE_CELLS)]
        q_steam = ca.fmax(0.0, ca.fmin(q_steam_max, p.ua_steam * (p.t_sat - tw2)))  # condensation-limited, kW
        flush = f_feed / 3600.0 * LINE_CELLS / p.v_pipe  # 1/s through one cell
        line = [
            flush * ((t1 if i == 0 else cells[i - 1]) - c) - p.ua_pipe / c_line * (c - p.t_amb)
            for i, c in enumerate(cells)
        ]
        return ca.vertcat(
            mcp_p / c_e1 * (t_feed - t1) + ua1 / c_e1 * (t_oil - t1),
            mcp_h / c_oil * (t_sup - t_oil) - ua1 / c_oil * (t_oil - t1),
            mcp_p / c_e2 * (cells[-1] - t2) + p.ua_e2 * rp / c_e2 * (tw2 - t2),
            (q_steam - p.ua_e2 * rp * (tw2 - t2)) / p.c_wall_e2,
            mcp_p / c_h3 * (t2 - t3) + p.ua_h3 * rp / c_h3 * (tw3 - t3),
            (q_abs - p.ua_h3 * rp * (tw3 - t3)) / p.c_wall_h3,
            (p.eta_fired * q_fired - q_abs) / p.tau_burner,
            *line,
        )

    steps = max(1, int(np.ceil(period_s / heat_train.HeatTrainModel.max_step_s - 1e-9)))
    x_next = _rk4(rhs, x, period_s / steps, steps)  # seconds inside the model
    by_name = {
        "T_E1_out": x[0],
        "T_oil_ret": x[1],
        "T_E2_in": x[nx - 1],
        "T_E2_out": x[2],
        "T_skin": x[5],
        "T_out": x[4],
    }
    y = ca.vertcat(*[by_name[n] for n in cvs])
    return _model(cvs, heat_train.MVS, heat_train.DVS, period_s, (x, u, d, x_next, y), scales)


def heat_train_state(model: heat_train.HeatTrainModel) -> np.ndarray:
    """Return the train's true state, its transfer line sampled into LINE_CELLS cells, as a latent (1, nx)."""
    return np.asarray([*model.x, *model.line_temperatures(LINE_CELLS)], dtype=float)[None, :]


def _model(
    cvs: tuple[str, ...],
    mvs: tuple[str, ...],
    dvs: tuple[str, ...],
    period_s: float,
    graph: tuple[Any, Any, Any, Any, Any],
    scales: dict[str, np.ndarray],
) -> CasadiModel:
    x, u, d, x_next, y = graph
    return CasadiModel(
        cv=cvs,
        mv=mvs,
        dv=dvs,
        sample_period_s=period_s,
        step=ca.Function("step", [x, u, d], [x_next]),
        readout=ca.Function("readout", [x], [y]),
        cv_std=scales["cv_std"],
        mv_std=scales["mv_std"],
        mv_min=scales["mv_min"],
        mv_max=scales["mv_max"],
    )
