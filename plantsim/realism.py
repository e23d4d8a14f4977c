"""What makes a simulated plant look like a real one: drift, actuator limits, sensor noise and sensor faults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from plantsim.line import Drift, MvTuning, Tag

FAULT_KINDS = ("dropout", "stuck", "spike")


@dataclass(frozen=True)
class FaultRates:
    """Sensor fault rates, per measured tag and per simulated hour (Poisson arrivals)."""

    dropout_per_h: float = 0.05  # value missing (NaN, written as empty/'Bad') for a while
    stuck_per_h: float = 0.02  # value frozen at the last good reading for a while
    spike_per_h: float = 0.2  # one sample off by 3-10 % of the physical range
    dropout_mean_s: float = 180.0  # mean dropout duration, simulated seconds (exponential)
    stuck_mean_s: float = 1800.0  # mean stuck duration, simulated seconds (exponential)

    def total_per_h(self) -> float:
        """Return the rate of any fault starting."""
        return self.dropout_per_h + self.stuck_per_h + self.spike_per_h


@dataclass(frozen=True)
class Realism:
    """Switches and scales for every non-ideal effect of the simulated plant."""

    noise_scale: float = 1.0  # multiplies each tag's noise_std; 0 gives exact measurements
    faults: FaultRates = field(default_factory=FaultRates)
    drift: bool = True  # DVs follow their Ornstein-Uhlenbeck drift; False holds them at the mean
    rate_limits: bool = True  # actuators ramp at their rate limit; False makes them jump to the setpoint

    @classmethod
    def ideal(cls) -> Realism:
        """Return a noise-free, fault-free, drift-free plant (tests of physics, benchmarks)."""
        return cls(noise_scale=0.0, faults=FaultRates(0.0, 0.0, 0.0), drift=False)


class Actuators:
    """MV actuators: setpoints clamped to limits, positions moving towards them at the ramp rate."""

    def __init__(self, tags: list[Tag], tuning: dict[str, MvTuning], *, rate_limits: bool) -> None:
        self.names = [t.name for t in tags]
        self._limits = {t.name: t.operating_bounds() for t in tags}
        self._ramp_per_s = {n: tuning[n].ramp_per_min / 60.0 for n in self.names}
        self._rate_limits = rate_limits
        self.setpoints = {n: tuning[n].nominal for n in self.names}
        self.positions = dict(self.setpoints)

    def write(self, name: str, value: float) -> float:
        """Set a setpoint, clamped to the MV's operating limits; return the value kept."""
        low, high = self._limits[name]
        if not math.isfinite(value):
            raise ValueError(f"setpoint {name} must be finite, got {value!r}")
        kept = min(max(float(value), low), high)
        self.setpoints[name] = kept
        return kept

    def move(self, dt_s: float) -> None:
        """Move each position towards its setpoint for dt_s seconds."""
        for n in self.names:
            gap = self.setpoints[n] - self.positions[n]
            if self._rate_limits:
                step = self._ramp_per_s[n] * dt_s
                gap = min(max(gap, -step), step)
            self.positions[n] += gap


class DisturbanceDrift:
    """Measured disturbances as bounded Ornstein-Uhlenbeck processes (exact discretisation)."""

    def __init__(self, drifts: dict[str, Drift], rng: np.random.Generator, *, enabled: bool) -> None:
        self.names = list(drifts)
        self._drifts = drifts
        self._rng = rng
        self._enabled = enabled
        self.values = {n: d.mean for n, d in drifts.items()}

    def advance(self, dt_s: float) -> None:
        """Advance every disturbance by dt_s seconds."""
        if not self._enabled or not self.names:
            return
        shocks = self._rng.standard_normal(len(self.names))
        for n, z in zip(self.names, shocks, strict=True):
            d = self._drifts[n]
            a = math.exp(-dt_s / d.time_constant_s)
            x = d.mean + (self.values[n] - d.mean) * a + d.std * math.sqrt(1.0 - a * a) * float(z)
            self.values[n] = min(max(x, d.bounds[0]), d.bounds[1])


class Sensors:
    """Measurement chain of the CVs and DVs: Gaussian noise plus dropout, stuck and spike faults."""

    def __init__(
        self, tags: list[Tag], realism: Realism, noise_rng: np.random.Generator, fault_rng: np.random.Generator
    ) -> None:
        self.names = [t.name for t in tags]
        self._std = np.array([t.noise_std * realism.noise_scale for t in tags])
        self._span = {t.name: t.physical_range[1] - t.physical_range[0] for t in tags}
        self._rates = realism.faults
        self._noise_rng = noise_rng
        self._fault_rng = fault_rng
        self.active: dict[str, str | None] = {n: None for n in self.names}  # fault kind now active per tag
        self._remaining_s = {n: 0.0 for n in self.names}
        self._last_good = {n: math.nan for n in self.names}
        self.fault_starts = {n: {k: 0 for k in FAULT_KINDS} for n in self.names}  # counters since start

    def measure(self, true: dict[str, float], dt_s: float) -> dict[str, float]:
        """Return the measured values for one sample taken dt_s after the previous one."""
        noise = self._noise_rng.standard_normal(len(self.names)) * self._std
        p_any = 1.0 - math.exp(-self._rates.total_per_h() * dt_s / 3600.0)
        draws = self._fault_rng.random((len(self.names), 4))  # (tags, [start?, kind, size, sign])
        out: dict[str, float] = {}
        for i, n in enumerate(self.names):
            clean = true[n] + float(noise[i])
            self._expire(n, dt_s)
            if self.active[n] is None and draws[i, 0] < p_any:
                self._start(n, float(draws[i, 1]))
            kind = self.active[n]
            if kind == "dropout":
                value = math.nan
            elif kind == "stuck":
                value = self._last_good[n] if math.isfinite(self._last_good[n]) else clean
            elif kind == "spike":
                size = (0.03 + 0.07 * float(draws[i, 2])) * self._span[n]
                value = clean + (size if draws[i, 3] < 0.5 else -size)
            else:
                value = clean
                self._last_good[n] = clean
            out[n] = value
        return out

    def _expire(self, n: str, dt_s: float) -> None:
        if self.active[n] == "spike":
            self.active[n] = None
        elif self.active[n] is not None:
            self._remaining_s[n] -= dt_s
            if self._remaining_s[n] <= 0.0:
                self.active[n] = None

    def _start(self, n: str, u: float) -> None:
        r = self._rates
        total = r.total_per_h()
        if u * total < r.dropout_per_h:
            kind, mean_s = "dropout", r.dropout_mean_s
        elif u * total < r.dropout_per_h + r.stuck_per_h:
            kind, mean_s = "stuck", r.stuck_mean_s
        else:
            kind, mean_s = "spike", 0.0
        self.active[n] = kind
        self._remaining_s[n] = float(self._fault_rng.exponential(mean_s)) if mean_s > 0 else 0.0
        self.fault_starts[n][kind] += 1
