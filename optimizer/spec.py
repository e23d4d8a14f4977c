"""What the controller must respect and optimise (from the line spec) and how it solves (settings)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Limits:
    """A low/high pair in engineering units; None means unbounded on that side."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        for side in (self.low, self.high):
            if side is not None and not math.isfinite(side):
                raise ValueError(f"limits must be finite numbers or None, got {side!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low limit {self.low} exceeds high limit {self.high}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Limits:
        """Read {low, high} as in the line spec (missing or null = unbounded)."""
        values = values or {}
        low, high = values.get("low"), values.get("high")
        return cls(None if low is None else float(low), None if high is None else float(high))


@dataclass(frozen=True)
class CvSpec:
    """A controlled variable: soft operating limits, hard safety limits."""

    name: str
    limits: Limits = Limits()  # operating limits, soft: slack with a ranked penalty
    safety: Limits = Limits()  # safety limits, hard: never crossed by the planned ensemble mean (± k spread)
    rank: int = 1  # priority of the soft limits, 1 = most important (largest penalty)


@dataclass(frozen=True)
class MvSpec:
    """A manipulated variable (setpoint): hard limits and move limits."""

    name: str
    limits: Limits = Limits()  # hard limits on the setpoint
    max_move_per_step: float | None = None  # largest setpoint change in one line sample period, engineering units
    ramp_rate_per_min: float | None = None  # largest rate of change, engineering units per minute


@dataclass(frozen=True)
class DvSpec:
    """A measured disturbance: forecast, never decided."""

    name: str


@dataclass(frozen=True)
class ObjectiveTerm:
    """Economic value per hour: price * product of the named tags' values (CV predicted, MV planned, DV forecast)."""

    tags: tuple[str, ...]
    price: float  # currency per hour per unit of the product of the tags
    description: str = ""


@dataclass(frozen=True)
class CvTarget:
    """A CV target, penalised as weight * (value - target)^2."""

    tag: str
    value: float
    weight: float = 1.0


@dataclass(frozen=True)
class MpcSpec:
    """The optimisation problem of one line in tag names; the platform fills it from the line spec."""

    cvs: tuple[CvSpec, ...]
    mvs: tuple[MvSpec, ...]
    dvs: tuple[DvSpec, ...] = ()
    objective_terms: tuple[ObjectiveTerm, ...] = ()
    targets: tuple[CvTarget, ...] = ()
    sample_period_s: float | None = None  # the line's sample period; must equal the twin's step when given

    @property
    def structure(self) -> tuple[Any, ...]:
        """Return what fixes the problem's shape; values outside it (limits, prices, targets) may change per solve."""
        return (
            tuple(c.name for c in self.cvs),
            tuple(m.name for m in self.mvs),
            tuple(d.name for d in self.dvs),
            tuple(t.tags for t in self.objective_terms),
            tuple(t.tag for t in self.targets),
        )

    @classmethod
    def from_line_spec(cls, spec: Mapping[str, Any]) -> MpcSpec:
        """Build the problem description from a parsed line spec (docs/line-spec.md)."""
        cvs, mvs, dvs = [], [], []
        for tag in spec.get("tags", []):
            role, name = tag["role"], tag["name"]
            if role == "CV":
                cvs.append(
                    CvSpec(
                        name,
                        Limits.from_dict(tag.get("limits")),
                        Limits.from_dict(tag.get("safety_limits")),
                        int(tag.get("soft_limit_rank", 1)),
                    )
                )
            elif role == "MV":
                mvs.append(
                    MvSpec(
                        name,
                        Limits.from_dict(tag.get("limits")),
                        _opt_float(tag.get("max_move_per_step")),
                        _opt_float(tag.get("ramp_rate_per_min")),
                    )
                )
            elif role == "DV":
                dvs.append(DvSpec(name))
        objective = spec.get("objective") or {}
        terms = tuple(
            ObjectiveTerm(tuple(t["tags"]), float(t["price"]), str(t.get("description", "")))
            for t in objective.get("terms", [])
        )
        targets = tuple(
            CvTarget(t["tag"], float(t["value"]), float(t.get("weight", 1.0))) for t in objective.get("targets", [])
        )
        period = (spec.get("line") or {}).get("sample_period_s")
        return cls(tuple(cvs), tuple(mvs), tuple(dvs), terms, targets, _opt_float(period))


def objective_value(spec: MpcSpec, rows: Mapping[str, Any], price: Any, *, zero: Any) -> Any:
    """Return the economic value per step: the sum over the spec's terms of price * product of the tags' rows.

    rows map each tag named by a term to its values per step (numpy (N,) or CasADi (1, N)); zero is a zero row of
    that shape; price (n_terms,) in currency per hour per unit of each term's product. Both the optimizer's objective
    and the platform's outcome of a proposal (measured values) are valued with this one function.
    """
    value = zero
    for i, term in enumerate(spec.objective_terms):
        product = 1 + zero
        for tag in term.tags:
            product = product * rows[tag]
        value = value + price[i] * product
    return value


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class MpcSettings:
    """How the controller formulates and solves; fixed when the problem is built."""

    horizon: int = 30  # predictor steps planned ahead (one step = the twin's sample period)
    move_weight: float = 0.1  # move suppression: weight per (MV move / MV std)^2, per step
    uncertainty_weight: float = 1.0  # weight per (ensemble spread of a CV / CV std)^2, per step
    economic_weight: float = 1.0  # weight of the economic value (currency per hour) in the cost
    trust_region_margin: float = 0.0  # MVs stay in the training range widened by this fraction of its width
    soft_penalty_by_rank: tuple[float, ...] = (1e4, 1e3, 1e2)  # penalty per (slack / CV std) for CV rank 1, 2, ...
    # With a calibrated twin (export v2) safety limits hold for, and bands show, the ensemble mean ± the twin's
    # calibrated interval (its coverage, per step ahead); these two apply to twins exported without a calibration.
    safety_spread_k: float = 1.0  # uncalibrated: safety limits hold for ensemble mean ± k * spread
    band_k: float = 2.0  # uncalibrated: reported uncertainty band is mean ± band_k * spread
    max_solver_time_s: float = 5.0  # wall-clock budget of one solve (all linearisations); past it, no proposal
    sqp_iterations: int = 15  # most linearisations of the twin per solve (each one QP, solved on a working set)
    sqp_step: float = 1.0  # trust region of one linearisation: largest MV change from the reference, in MV stds
    sqp_tolerance: float = 1e-3  # converged when no MV moves more than this (in MV stds) between linearisations
    sqp_cost_tolerance: float = 1e-5  # ... or when the linearised twin promises less relative cost decrease than this
    terminal_hold_steps: int | None = None  # the plan holds its setpoints over its last steps (terminal constraint,
    # so plans do not unwind at the horizon's end); None: a sixth of the horizon, 0: none
    terminal_tail_steps: int | None = None  # terminal cost: the twin predicts this many steps past the plan with
    # its last setpoints held, and the objective counts them as plan steps (economics, targets; soft limits at the
    # tail's end, as held over it), so a plan pays within the horizon for what its final setpoints cost after it
    # instead of unwinding its moves (a prediction horizon N + tail over a control horizon N). The tail is linearised
    # once per solve (optimizer.condensed.Terminal). None: as many steps as the horizon; 0: none. Without it the heat
    # train's plans cut steam, fuel and hot oil over their second half (paid at once; T_out falls only after the
    # horizon): with the last setpoints held, T_out fell 29 degC in the 60 steps past each plan. Twin MPC closed
    # loops of 40 min, demo twins, tuning seeds 21/5/11: that fall 29 -> 4-5 degC, gain over hold +11/+10/+9 %,
    # CPU p95 per solve x1.2/x1.4 (91 -> 109, 53 -> 75 ms); reactor seeds 11/5/21: gain -1.3/+0.4/0 %, fewer
    # linearisations (~3 -> 2). The tail re-linearised at every SQP step (the first version) kept the same plans but
    # needed 5.3 linearisations per solve against 2.8 (seed 21): wall p95 x2. The IPOPT reference has no tail.
    max_plan_ood: float | None = None  # keep the twin's OOD score along the plan (1.0 = its training p99) at most
    # this: the excess is penalised by plan_ood_weight per squared unit and step; None: no limit (twins exported
    # without OOD statistics have none either)
    plan_ood_weight: float = 1e4
    cv_backoff: float = 0.25  # hold the mean inside soft CV limits by this share of the twin's calibrated one-step-
    # ahead half-width, so the measured CV stays inside most of the time; 0: none (nor without a calibration).
    # Sized on a reactor closed loop bench closedloop does not report (plant seed 5, history seed 7): shares 0, 0.25,
    # 0.5, 1 gave gain ratios 0.97, 0.89, 0.82, 0.68 with the CVs above a soft limit 55 %, 11 %, 0.5 %, 0 % of the time.
    active_tolerance: float = 1e-4  # a constraint within this (relative) distance of its bound is reported active
    qp_solver: str = "qpoases"  # casadi conic plugin of the condensed QP (dense, convex); "daqp" is as fast but
    # stalls on badly scaled QPs (tiny move weight beside large soft-limit penalties), "proxqp" slower
    qp_options: Mapping[str, Any] = field(default_factory=dict)  # extra options of that plugin
    blas_threads: int | None = 1  # numpy's OpenBLAS threads during a solve (small matrices); None leaves it alone
    # The IPOPT reference (optimizer.reference, for tests and benchmarks) only: MpcController never reads these.
    max_iterations: int = 200  # IPOPT iteration budget of one linearisation
    tolerance: float = 1e-6  # IPOPT convergence tolerance
    hessian: Literal["exact", "limited-memory"] = "exact"  # exact is faster here (see bench/mpc.py)
    ipopt_options: Mapping[str, Any] = field(default_factory=dict)  # extra IPOPT options, "ipopt." prefix omitted

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.max_iterations < 1:
            raise ValueError("horizon and max_iterations must be >= 1")
        if not self.soft_penalty_by_rank or any(w <= 0 for w in self.soft_penalty_by_rank):
            raise ValueError("soft_penalty_by_rank needs at least one positive weight")
        if self.max_solver_time_s <= 0:
            raise ValueError("max_solver_time_s must be > 0")
        if self.hessian not in ("exact", "limited-memory"):
            raise ValueError(f"hessian must be 'exact' or 'limited-memory', got {self.hessian!r}")
        if self.max_plan_ood is not None and not self.max_plan_ood > 0:
            raise ValueError("max_plan_ood must be > 0 or None")
        if self.terminal_hold_steps is not None and self.terminal_hold_steps < 0:
            raise ValueError("terminal_hold_steps must be >= 0 or None")
        if self.terminal_tail_steps is not None and self.terminal_tail_steps < 0:
            raise ValueError("terminal_tail_steps must be >= 0 or None")
        names = ("move_weight", "uncertainty_weight", "safety_spread_k", "band_k", "tolerance", "plan_ood_weight")
        for name in (*names, "cv_backoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
