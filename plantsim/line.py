"""Plain descriptions of a production line: tags, MV tuning, disturbance drift and the economic objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

Role = Literal["CV", "MV", "DV"]
Bounds = tuple[float | None, float | None]


@dataclass(frozen=True)
class Tag:
    """One measured or manipulated signal as the platform sees it."""

    name: str  # tag name, unique in the line
    role: Role  # CV (controlled), MV (setpoint), DV (measured disturbance)
    unit: str  # engineering unit
    description: str
    physical_range: tuple[float, float]  # outside it a value is a bad measurement
    limits: Bounds | None = None  # operating limits (CV soft, MV hard; the PLC refuses MV writes outside them)
    safety_limits: Bounds | None = None  # CV only: hard limits never to be crossed
    noise_std: float = 0.0  # measurement noise standard deviation, engineering units
    opcua_node: str = ""  # "ns=2;s=<line>.<tag>"

    def operating_bounds(self) -> tuple[float, float]:
        """Return (low, high) operating limits, open sides filled from the physical range."""
        low, high = self.limits if self.limits is not None else (None, None)
        return (self.physical_range[0] if low is None else low, self.physical_range[1] if high is None else high)

    def with_node(self, node: str) -> Tag:
        """Return a copy bound to an OPC UA node id."""
        return replace(self, opcua_node=node)


@dataclass(frozen=True)
class MvTuning:
    """How an MV's actuator moves and how the step-test campaign excites it."""

    nominal: float  # normal-operation setpoint
    safe: float  # setpoint the PLC falls back to when the platform's heartbeat is lost
    test_band: tuple[float, float]  # step tests draw setpoints within this band (inside the limits)
    max_move_per_step: float  # platform-side largest setpoint change per sample period
    ramp_per_min: float  # actuator rate limit, engineering units per minute


@dataclass(frozen=True)
class Drift:
    """A measured disturbance drifting as a bounded Ornstein-Uhlenbeck process."""

    mean: float  # long-run mean, engineering units
    std: float  # stationary standard deviation
    time_constant_s: float  # mean-reversion time constant, simulated seconds
    bounds: tuple[float, float]  # hard clip (physical range of the disturbance)


@dataclass(frozen=True)
class ObjectiveTerm:
    """Economic value per hour contributed by price * product of the named tags."""

    tags: tuple[str, ...]
    price: float
    description: str


@dataclass(frozen=True)
class Target:
    """A CV target penalised as weight * (value - target)^2."""

    tag: str
    value: float
    weight: float


class PlantModel(Protocol):
    """Deterministic process dynamics; inputs held constant over one `advance`."""

    def reset(self, u: Sequence[float], d: Sequence[float]) -> None:
        """Start at the steady state for MVs u and DVs d."""

    def advance(self, u: Sequence[float], d: Sequence[float], dt_s: float) -> None:
        """Integrate dt_s simulated seconds."""

    def outputs(self) -> dict[str, float]:
        """Return the true CV values by tag name."""


@dataclass(frozen=True)
class Line:
    """Everything that defines a line apart from its dynamics."""

    id: str
    name: str
    site: str
    area: str
    sample_period_s: float  # seconds between samples the platform's twin works at
    tags: tuple[Tag, ...]
    mv_tuning: dict[str, MvTuning]
    dv_drift: dict[str, Drift]
    objective_terms: tuple[ObjectiveTerm, ...]
    targets: tuple[Target, ...] = ()
    currency: str = "EUR"
    description: str = ""

    def names(self, role: Role) -> tuple[str, ...]:
        """Return the tag names of one role, in declaration order."""
        return tuple(t.name for t in self.tags if t.role == role)

    def tag(self, name: str) -> Tag:
        """Return the tag called name."""
        for t in self.tags:
            if t.name == name:
                return t
        raise KeyError(f"line {self.id!r} has no tag {name!r}")

    def node_id(self, suffix: str) -> str:
        """Return the string node id of a line-level node (mode, heartbeat, ...)."""
        return f"ns=2;s={self.id}.{suffix}"
