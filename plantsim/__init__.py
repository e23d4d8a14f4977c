"""Simulated process plants behind OPC UA PLCs: the Van de Vusse reactor and a feed preheat train."""

from plantsim.line import Line, Tag
from plantsim.realism import FaultRates, Realism
from plantsim.simulator import LineSimulator, Sample, available_lines, build_simulator, make_line

__all__ = [
    "FaultRates",
    "Line",
    "LineSimulator",
    "Realism",
    "Sample",
    "Tag",
    "available_lines",
    "build_simulator",
    "make_line",
]
