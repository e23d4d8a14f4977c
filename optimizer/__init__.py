"""Economic MPC on a learned twin: CasADi + numpy only, exchanging plain data with the platform."""

from optimizer.controller import MpcController
from optimizer.dynamics import EXPORT_FORMAT, EXPORT_VERSION, ExportError, TwinDynamics
from optimizer.model import CasadiModel
from optimizer.result import MpcResult, MpcStatus
from optimizer.spec import (
    CvSpec,
    CvTarget,
    DvSpec,
    Limits,
    MpcSettings,
    MpcSpec,
    MvSpec,
    ObjectiveTerm,
    objective_value,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "CasadiModel",
    "CvSpec",
    "CvTarget",
    "DvSpec",
    "ExportError",
    "Limits",
    "MpcController",
    "MpcResult",
    "MpcSettings",
    "MpcSpec",
    "MpcStatus",
    "MvSpec",
    "ObjectiveTerm",
    "TwinDynamics",
    "objective_value",
]
