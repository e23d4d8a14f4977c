"""A line's simulator: dynamics + actuators + drifting disturbances + sensors, advanced by explicit time steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plantsim import heat_train, vdv_reactor
from plantsim.line import Line, PlantModel
from plantsim.realism import Actuators, DisturbanceDrift, Realism, Sensors

# line id -> (line description factory, dynamics factory)
LINES: dict[str, tuple[Callable[[], Line], Callable[[], PlantModel]]] = {
    vdv_reactor.LINE_ID: (vdv_reactor.make_line, vdv_reactor.VdvModel),
    heat_train.LINE_ID: (heat_train.make_line, heat_train.HeatTrainModel),
}


@dataclass(frozen=True)
class Sample:
    """One sample of a line, as its PLC would publish it."""

    time_s: float  # simulated seconds since the simulator started
    values: dict[str, float]  # every tag: measured CVs/DVs (NaN = dropout), MV setpoints
    true: dict[str, float]  # noise- and fault-free CVs/DVs
    actuators: dict[str, float]  # MV actuator positions (after rate limits)
    faults: dict[str, str | None]  # sensor fault active on each measured tag


class LineSimulator:
    """Deterministic simulator of one line for a given seed; time only moves through `step`."""

    def __init__(self, line: Line, model: PlantModel, *, seed: int = 0, realism: Realism | None = None) -> None:
        self.line = line
        self.model = model
        self.seed = seed
        self.realism = realism or Realism()
        rng_drift, rng_noise, rng_fault = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        mv_tags = [t for t in line.tags if t.role == "MV"]
        measured = [t for t in line.tags if t.role != "MV"]
        self._cv_names = line.names("CV")
        self._mv_names = line.names("MV")
        self._dv_names = line.names("DV")
        self.actuators = Actuators(mv_tags, line.mv_tuning, rate_limits=self.realism.rate_limits)
        self.drift = DisturbanceDrift(line.dv_drift, rng_drift, enabled=self.realism.drift)
        self.sensors = Sensors(measured, self.realism, rng_noise, rng_fault)
        self.time_s = 0.0
        self.model.reset(self._u(), self._d())
        self.last = self._sample(self.sensors.measure(self._true(), 0.0))

    @property
    def setpoints(self) -> dict[str, float]:
        """Return the current MV setpoints."""
        return dict(self.actuators.setpoints)

    def write_setpoint(self, name: str, value: float) -> float:
        """Set an MV setpoint (clamped to its limits); return the value kept."""
        if name not in self._mv_names:
            raise KeyError(f"{name!r} is not an MV of line {self.line.id!r}")
        return self.actuators.write(name, value)

    def apply_safe_setpoints(self) -> dict[str, float]:
        """Set every MV to its safe fallback setpoint; return them."""
        return {n: self.actuators.write(n, self.line.mv_tuning[n].safe) for n in self._mv_names}

    def step(self, dt_s: float) -> Sample:
        """Advance dt_s simulated seconds and return the sample taken at the end."""
        if not dt_s > 0 or not math.isfinite(dt_s):
            raise ValueError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
        self.drift.advance(dt_s)
        self.actuators.move(dt_s)
        self.model.advance(self._u(), self._d(), dt_s)
        self.time_s += dt_s
        self.last = self._sample(self.sensors.measure(self._true(), dt_s))
        return self.last

    def _u(self) -> list[float]:
        return [self.actuators.positions[n] for n in self._mv_names]

    def _d(self) -> list[float]:
        return [self.drift.values[n] for n in self._dv_names]

    def _true(self) -> dict[str, float]:
        true = self.model.outputs()
        true.update(self.drift.values)
        return true

    def _sample(self, measured: dict[str, float]) -> Sample:
        values = {
            t.name: (self.actuators.setpoints[t.name] if t.role == "MV" else measured[t.name]) for t in self.line.tags
        }
        return Sample(self.time_s, values, self._true(), dict(self.actuators.positions), dict(self.sensors.active))


def available_lines() -> list[str]:
    """Return the ids of the lines this package simulates."""
    return list(LINES)


def make_line(line_id: str) -> Line:
    """Return the description of a line by id."""
    if line_id not in LINES:
        raise KeyError(f"unknown line {line_id!r}; choose from {', '.join(LINES)}")
    return LINES[line_id][0]()


def build_simulator(line_id: str, *, seed: int = 0, realism: Realism | None = None) -> LineSimulator:
    """Build a line's simulator, started at steady state at its nominal setpoints."""
    line = make_line(line_id)
    return LineSimulator(line, LINES[line_id][1](), seed=seed, realism=realism)
