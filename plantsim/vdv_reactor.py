"""Van de Vusse CSTR (Klatt & Engell 1998), exactly as in the do-mpc CSTR example; time in hours inside the model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from plantsim.line import Drift, Line, MvTuning, ObjectiveTerm, Role, Tag, Target

LINE_ID = "vdv-reactor"
STATES = ("C_a", "C_b", "T_R", "T_K")
MVS = ("F", "Q_dot")
DVS = ("C_A0", "T_in")


@dataclass(frozen=True)
class VdvParameters:
    """Published constants of the benchmark (units as in the shared plant doc)."""

    alpha: float = 1.0  # kinetic uncertainty factor on k3's activation energy, published in {0.95, 1, 1.05}
    beta: float = 1.0  # kinetic uncertainty factor on k1, published in {0.9, 1, 1.1}
    k0_ab: float = 1.287e12  # 1/h
    k0_bc: float = 1.287e12  # 1/h
    k0_ad: float = 9.043e9  # l/(mol h)
    e_a_ab: float = 9758.3  # activation energy / R, K
    e_a_bc: float = 9758.3  # K
    e_a_ad: float = 8560.0  # K
    dh_ab: float = 4.2  # kJ/mol (positive: endothermic)
    dh_bc: float = -11.0  # kJ/mol
    dh_ad: float = -41.85  # kJ/mol
    rho: float = 0.9342  # kg/l
    c_p: float = 3.01  # kJ/(kg K)
    c_pk: float = 2.0  # kJ/(kg K), coolant
    a_r: float = 0.215  # m2, jacket heat-transfer area
    v_r: float = 10.01  # l, reactor volume
    m_k: float = 5.0  # kg, coolant mass in the jacket
    k_w: float = 4032.0  # kJ/(h m2 K)


def rates(p: VdvParameters, c_a: float, c_b: float, t_r: float) -> tuple[float, float, float]:
    """Return the reaction rates r1 (A->B), r2 (B->C), r3 (2A->D as A consumed), mol/(l h)."""
    t_abs = t_r + 273.15
    k1 = p.beta * p.k0_ab * math.exp(-p.e_a_ab / t_abs)
    k2 = p.k0_bc * math.exp(-p.e_a_bc / t_abs)
    k3 = p.k0_ad * math.exp(-p.alpha * p.e_a_ad / t_abs)
    return k1 * c_a, k2 * c_b, k3 * c_a * c_a


def derivatives(p: VdvParameters, x: Sequence[float], u: Sequence[float], d: Sequence[float]) -> tuple[float, ...]:
    """Return dx/dt per hour for x=(C_a, C_b, T_R, T_K), u=(F, Q_dot), d=(C_A0, T_in)."""
    c_a, c_b, t_r, t_k = x
    f, q_dot = u
    c_a0, t_in = d
    r1, r2, r3 = rates(p, c_a, c_b, t_r)
    dc_a = f * (c_a0 - c_a) - r1 - r3
    dc_b = -f * c_b + r1 - r2
    dt_r = (
        (r1 * p.dh_ab + r2 * p.dh_bc + r3 * p.dh_ad) / (-p.rho * p.c_p)
        + f * (t_in - t_r)
        + p.k_w * p.a_r * (t_k - t_r) / (p.rho * p.c_p * p.v_r)
    )
    # As published (and in do-mpc), Q_dot enters this balance in the same units as K_w A_R dT, i.e. kJ/h.
    dt_k = (q_dot + p.k_w * p.a_r * (t_r - t_k)) / (p.m_k * p.c_pk)
    return dc_a, dc_b, dt_r, dt_k


def rk4(p: VdvParameters, x: Sequence[float], u: Sequence[float], d: Sequence[float], h: float) -> tuple[float, ...]:
    """Advance the state by one classical Runge-Kutta step of h hours."""
    k1 = derivatives(p, x, u, d)
    x2 = [xi + 0.5 * h * ki for xi, ki in zip(x, k1, strict=True)]
    k2 = derivatives(p, x2, u, d)
    x3 = [xi + 0.5 * h * ki for xi, ki in zip(x, k2, strict=True)]
    k3 = derivatives(p, x3, u, d)
    x4 = [xi + h * ki for xi, ki in zip(x, k3, strict=True)]
    k4 = derivatives(p, x4, u, d)
    return tuple(xi + h / 6.0 * (a + 2 * b + 2 * c + e) for xi, a, b, c, e in zip(x, k1, k2, k3, k4, strict=True))


class VdvModel:
    """Deterministic reactor state with an `advance` verb (inputs held over each call)."""

    max_step_h = 0.001  # RK4 internal step, 3.6 s: |lambda h| < 0.4 over the whole operating range

    def __init__(self, params: VdvParameters | None = None) -> None:
        self.params = params or VdvParameters()
        self.x: tuple[float, ...] = (0.8, 0.5, 134.14, 130.0)  # published start

    def reset(self, u: Sequence[float], d: Sequence[float]) -> None:
        """Start at the steady state for inputs u and disturbances d."""
        self.x = steady_state(self.params, u, d)

    def advance(self, u: Sequence[float], d: Sequence[float], dt_s: float) -> None:
        """Integrate dt_s seconds with u and d held constant."""
        dt_h = dt_s / 3600.0
        n = max(1, math.ceil(dt_h / self.max_step_h - 1e-9))
        h = dt_h / n
        x = self.x
        for _ in range(n):
            x = rk4(self.params, x, u, d, h)
        self.x = x

    def outputs(self) -> dict[str, float]:
        """Return the true CVs by tag name."""
        return dict(zip(STATES, self.x, strict=True))


def steady_state(
    p: VdvParameters, u: Sequence[float], d: Sequence[float], x0: Sequence[float] = (0.8, 0.5, 134.14, 130.0)
) -> tuple[float, ...]:
    """Return the steady state reached from x0 under constant inputs (integrated, then Newton-polished)."""
    x: tuple[float, ...] = tuple(x0)
    for _ in range(4000):  # 4 h of process time: many residence times at any F in range
        x = rk4(p, x, u, d, 0.001)
    for _ in range(20):  # Newton on f(x) = 0 with a finite-difference Jacobian
        f0 = derivatives(p, x, u, d)
        if max(abs(v) for v in f0) < 1e-11:
            break
        jac = [[0.0] * 4 for _ in range(4)]
        for j in range(4):
            eps = 1e-6 * max(1.0, abs(x[j]))
            xp = list(x)
            xp[j] += eps
            fj = derivatives(p, xp, u, d)
            for i in range(4):
                jac[i][j] = (fj[i] - f0[i]) / eps
        step = _solve(jac, [-v for v in f0])
        x = tuple(xi + si for xi, si in zip(x, step, strict=True))
    return x


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve a small dense system by Gaussian elimination with partial pivoting."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            fac = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= fac * m[col][c]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
    return out


def make_line() -> Line:
    """Describe the reactor line: tags, limits, tuning, drift, objective."""
    cv: Role = "CV"
    dv: Role = "DV"
    mv: Role = "MV"
    tags = (
        Tag("C_b", cv, "mol/l", "Product B concentration (quality)", (0.0, 3.0), limits=(0.7, 2.0), noise_std=0.004),
        Tag(
            "T_R",
            cv,
            "degC",
            "Reactor temperature",
            (0.0, 200.0),
            limits=(50.0, 137.0),
            safety_limits=(None, 140.0),
            noise_std=0.08,
        ),
        Tag("C_a", cv, "mol/l", "Reactant A concentration", (0.0, 6.0), limits=(0.1, 2.0), noise_std=0.004),
        Tag("T_K", cv, "degC", "Jacket coolant temperature", (0.0, 200.0), limits=(50.0, 140.0), noise_std=0.08),
        Tag("C_A0", dv, "mol/l", "Feed concentration of A", (0.0, 8.0), noise_std=0.01),
        Tag("T_in", dv, "degC", "Feed temperature", (0.0, 200.0), noise_std=0.08),
        Tag("F", mv, "1/h", "Feed flow (dilution rate) setpoint", (0.0, 120.0), limits=(5.0, 100.0)),
        Tag(
            "Q_dot",
            mv,
            "kW",
            "Jacket heat removal setpoint (negative = cooling)",
            (-9000.0, 0.0),
            limits=(-8500.0, 0.0),
        ),
    )
    return Line(
        id=LINE_ID,
        name="Van de Vusse reactor",
        site="Demo site",
        area="Reactors",
        sample_period_s=18.0,
        tags=tuple(t.with_node(f"ns=2;s={LINE_ID}.{t.name}") for t in tags),
        mv_tuning={
            "F": MvTuning(nominal=18.0, safe=10.0, test_band=(10.0, 25.0), max_move_per_step=5.0, ramp_per_min=10.0),
            "Q_dot": MvTuning(
                nominal=-4500.0,
                safe=-5000.0,
                test_band=(-7000.0, -3500.0),
                max_move_per_step=500.0,
                ramp_per_min=1500.0,
            ),
        },
        dv_drift={
            "C_A0": Drift(mean=5.1, std=0.12, time_constant_s=6 * 3600.0, bounds=(4.5, 5.7)),
            "T_in": Drift(mean=130.0, std=1.5, time_constant_s=3 * 3600.0, bounds=(125.0, 135.0)),
        },
        objective_terms=(
            ObjectiveTerm(("F", "C_b"), 2.0, "product value (B produced per unit reactor volume)"),
            ObjectiveTerm(("Q_dot",), 0.001, "cooling cost (Q_dot < 0 is cooling)"),
        ),
        targets=(Target("C_b", 0.9, 1.0),),
        description="Jacketed CSTR, A -> B -> C and 2A -> D (Klatt & Engell 1998); B is the product.",
    )
