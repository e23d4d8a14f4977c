"""The twin's ensemble latent dynamics and readout, rebuilt in CasADi from its exported arrays."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import casadi as ca
import numpy as np

from optimizer.bands import Calibration
from optimizer.ood import OodModel

EXPORT_FORMAT = "twinops-twin-export"
EXPORT_VERSION = 2  # the version this optimizer writes in its docs; it reads every one of SUPPORTED_VERSIONS
SUPPORTED_VERSIONS = (1, 2)  # 2 adds the interval calibration and OOD statistics, both optional

Activation = Callable[[ca.MX], ca.MX]


def _softplus(x: ca.MX) -> ca.MX:
    # log(1 + e^x) without overflow for large |x|; equal to torch's softplus (beta 1) to < 1e-8.
    return ca.fmax(x, 0) + ca.log1p(ca.exp(-ca.fabs(x)))


ACTIVATIONS: dict[str, Activation] = {
    "tanh": ca.tanh,
    "silu": lambda x: x / (1 + ca.exp(-x)),
    "softplus": _softplus,
}


def _sigmoid(x: ca.MX) -> ca.MX:
    return 1 / (1 + ca.exp(-x))


# d act / d a, given the pre-activation a and the activation h = act(a)
SLOPES: dict[str, Callable[[ca.MX, ca.MX], ca.MX]] = {
    "tanh": lambda a, h: 1 - h**2,
    "silu": lambda a, h: _sigmoid(a) * (1 + a * (1 - _sigmoid(a))),
    "softplus": lambda a, h: _sigmoid(a),
}


class ExportError(ValueError):
    """A twin export that this optimizer cannot rebuild (wrong format, version or shapes)."""


@dataclass(frozen=True)
class Layer:
    """One affine layer of an MLP: out = weight @ x + bias."""

    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)


@dataclass(frozen=True, eq=False)
class TwinDynamics:
    """Ensemble latent dynamics z_next = z + next(z, u, d) and readout y = readout(z), as the export defines them."""

    cv: tuple[str, ...]  # CV tag names, in array order
    mv: tuple[str, ...]  # MV tag names, in array order
    dv: tuple[str, ...]  # DV tag names, in array order (may be empty)
    nz: int  # latent dimension
    members: int  # ensemble size M
    activation: str  # "tanh", "silu" or "softplus", after every layer but the last of each MLP
    sample_period_s: float  # one predictor step, seconds
    next_layers: tuple[tuple[Layer, ...], ...]  # [member][layer] of the predictor
    readout_layers: tuple[tuple[Layer, ...], ...]  # [member][layer] of the readout
    cv_mean: np.ndarray  # (n_cv,) engineering units
    cv_std: np.ndarray  # (n_cv,)
    mv_mean: np.ndarray  # (n_mv,)
    mv_std: np.ndarray  # (n_mv,)
    dv_mean: np.ndarray  # (n_dv,)
    dv_std: np.ndarray  # (n_dv,)
    train_mv_min: np.ndarray  # (n_mv,) MV range seen in training
    train_mv_max: np.ndarray  # (n_mv,)
    train_dv_min: np.ndarray  # (n_dv,)
    train_dv_max: np.ndarray  # (n_dv,)
    calibration: Calibration | None = None  # the twin's calibrated intervals; None (v1 export): raw spreads
    ood: OodModel | None = None  # the twin's OOD statistics; None (v1 export): no OOD score along plans

    @classmethod
    def from_export(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> TwinDynamics:
        """Rebuild the dynamics from a `twinops-twin-export` v1 or v2 (meta, arrays) pair, checking every shape."""
        if meta.get("format") != EXPORT_FORMAT:
            raise ExportError(f"not a twin export: format is {meta.get('format')!r}, expected {EXPORT_FORMAT!r}")
        if meta.get("version") not in SUPPORTED_VERSIONS:
            raise ExportError(
                f"twin export version {meta.get('version')!r} is not supported; this optimizer reads versions "
                f"{', '.join(str(v) for v in SUPPORTED_VERSIONS)}"
            )
        for key in ("nz", "cv", "mv", "dv", "members", "activation", "sample_period_s"):
            if key not in meta:
                raise ExportError(f"twin export meta lacks {key!r}")
        if meta["activation"] not in ACTIVATIONS:
            raise ExportError(f"unknown activation {meta['activation']!r}; expected one of {sorted(ACTIVATIONS)}")
        nz, members = int(meta["nz"]), int(meta["members"])
        cv, mv, dv = (tuple(str(n) for n in meta[k]) for k in ("cv", "mv", "dv"))
        if nz < 1 or members < 1 or not cv or not mv:
            raise ExportError(f"twin export needs nz >= 1, members >= 1, CVs and MVs; got nz={nz}, M={members}")
        for names, role in ((cv, "CV"), (mv, "MV"), (dv, "DV")):
            if len(set(names)) != len(names):
                raise ExportError(f"twin export has duplicate {role} names: {list(names)}")
        n_cv, n_mv, n_dv = len(cv), len(mv), len(dv)

        def vector(key: str, n: int) -> np.ndarray:
            return _array(arrays, key, (n,))

        next_layers = tuple(_mlp(arrays, f"m{k}/next", nz + n_mv + n_dv, nz) for k in range(members))
        readout_layers = tuple(_mlp(arrays, f"m{k}/readout", nz, n_cv) for k in range(members))
        for name, stack in (("next", next_layers), ("readout", readout_layers)):
            shapes = [[layer.weight.shape for layer in mlp] for mlp in stack]
            if any(s != shapes[0] for s in shapes):
                raise ExportError(f"ensemble members have different {name} architectures: {shapes}")
        extra = sorted(k for k in arrays if (m := re.match(r"m(\d+)/", k)) and int(m.group(1)) >= members)
        if extra:
            raise ExportError(f"twin export has arrays for more than {members} members: {extra[:3]}")
        dyn = cls(
            cv=cv,
            mv=mv,
            dv=dv,
            nz=nz,
            members=members,
            activation=str(meta["activation"]),
            sample_period_s=float(meta["sample_period_s"]),
            next_layers=next_layers,
            readout_layers=readout_layers,
            cv_mean=vector("norm/cv_mean", n_cv),
            cv_std=vector("norm/cv_std", n_cv),
            mv_mean=vector("norm/mv_mean", n_mv),
            mv_std=vector("norm/mv_std", n_mv),
            dv_mean=vector("norm/dv_mean", n_dv),
            dv_std=vector("norm/dv_std", n_dv),
            train_mv_min=vector("train/mv_min", n_mv),
            train_mv_max=vector("train/mv_max", n_mv),
            train_dv_min=vector("train/dv_min", n_dv),
            train_dv_max=vector("train/dv_max", n_dv),
            calibration=_calibration(meta, arrays, n_cv),
            ood=_ood(arrays, nz + n_mv + n_dv),
        )
        if not dyn.sample_period_s > 0:
            raise ExportError(f"sample_period_s must be > 0, got {dyn.sample_period_s}")
        for key in ("cv_std", "mv_std", "dv_std"):
            if np.any(getattr(dyn, key) <= 0):
                raise ExportError(f"norm/{key} must be > 0 everywhere")
        if np.any(dyn.train_mv_min > dyn.train_mv_max):
            raise ExportError("train/mv_min exceeds train/mv_max")
        return dyn

    # ---------------------------------------------------------------- CasADi functions, all members at once
    # Each member is a chain of dense MX matrix products (never scalarised into SX); latents are stacked
    # member-major: z_all (M*nz,) = [z of member 0, z of member 1, ...].

    def step_function(self) -> ca.Function:
        """Return step(z (M*nz,), u (n_mv,), d (n_dv,)) -> z_next (M*nz,), u and d in engineering units."""
        z, u, d = self._symbols()
        x_ud = self._normalised_inputs(u, d)
        z_next = [
            z_m + self._mlp(mlp, ca.vertcat(z_m, x_ud))[0]
            for z_m, mlp in zip(self._split(z), self.next_layers, strict=True)
        ]
        return ca.Function("twin_step", [z, u, d], [ca.vertcat(*z_next)], ["z", "u", "d"], ["z_next"])

    def readout_function(self) -> ca.Function:
        """Return readout(z (M*nz,)) -> y (M*n_cv,) in engineering units, member-major."""
        z = ca.MX.sym("z", self.members * self.nz)
        y = [
            self._mlp(mlp, z_m)[0] * self.cv_std + self.cv_mean
            for z_m, mlp in zip(self._split(z), self.readout_layers, strict=True)
        ]
        return ca.Function("twin_readout", [z], [ca.vertcat(*y)], ["z"], ["y"])

    def linearization_function(self) -> ca.Function:
        """Return lin(z, u, d) -> (z_next, A, B, y_next, C): one step and its exact first derivatives.

        A (nz, M*nz) holds each member's d z_next / d z side by side, B (M*nz, n_mv) = d z_next / d u,
        y_next (M*n_cv,) the readout of z_next and C (n_cv, M*nz) each member's d y / d z_next side by side.
        Derivatives use the chain rule on the dense layers (cheaper than generic AD for these shapes).
        """
        z, u, d = self._symbols()
        x_ud = self._normalised_inputs(u, d)
        z_next, a_blocks, b_rows, y_next, c_blocks = [], [], [], [], []
        for z_m, nxt, out in zip(self._split(z), self.next_layers, self.readout_layers, strict=True):
            step, jac = self._mlp(nxt, ca.vertcat(z_m, x_ud), jacobian=True)
            z_next.append(z_m + step)
            a_blocks.append(ca.DM.eye(self.nz) + jac[:, : self.nz])
            b_rows.append(jac[:, self.nz : self.nz + len(self.mv)] / ca.repmat(ca.DM(self.mv_std).T, self.nz, 1))
            y_n, c_n = self._mlp(out, z_next[-1], jacobian=True)
            y_next.append(y_n * self.cv_std + self.cv_mean)
            c_blocks.append(c_n * ca.repmat(ca.DM(self.cv_std), 1, self.nz))
        outputs = [
            ca.vertcat(*z_next),
            ca.horzcat(*a_blocks),
            ca.vertcat(*b_rows),
            ca.vertcat(*y_next),
            ca.horzcat(*c_blocks),
        ]
        return ca.Function(
            "twin_linearization", [z, u, d], outputs, ["z", "u", "d"], ["z_next", "A", "B", "y_next", "C"]
        )

    def _symbols(self) -> tuple[ca.MX, ca.MX, ca.MX]:
        return ca.MX.sym("z", self.members * self.nz), ca.MX.sym("u", len(self.mv)), ca.MX.sym("d", len(self.dv))

    def _normalised_inputs(self, u: ca.MX, d: ca.MX) -> ca.MX:
        u_n = (u - self.mv_mean) / self.mv_std
        return ca.vertcat(u_n, (d - self.dv_mean) / self.dv_std) if self.dv else u_n

    def _split(self, z: ca.MX) -> list[ca.MX]:
        return [z[m * self.nz : (m + 1) * self.nz] for m in range(self.members)]

    def _mlp(self, layers: tuple[Layer, ...], x: ca.MX, jacobian: bool = False) -> tuple[Any, Any]:
        """Return the MLP output and, if asked, its Jacobian d out / d x (out, in)."""
        act, slope = ACTIVATIONS[self.activation], SLOPES[self.activation]
        h, slopes = x, []
        for i, layer in enumerate(layers):
            a = ca.mtimes(ca.DM(layer.weight), h) + ca.DM(layer.bias)
            if i < len(layers) - 1:
                h = act(a)
                slopes.append(slope(a, h))
            else:
                h = a
        if not jacobian:
            return h, None
        jac: Any = ca.DM(layers[-1].weight)
        for layer, s in zip(reversed(layers[:-1]), reversed(slopes), strict=True):
            jac = ca.mtimes(jac * ca.repmat(s.T, jac.size1(), 1), ca.DM(layer.weight))
        return h, jac

    # ---------------------------------------------------------------- numeric helpers

    def rollout(self, z0: np.ndarray, u_plan: np.ndarray, d_plan: np.ndarray) -> np.ndarray:
        """Return the CVs y[k] (N, M, n_cv) after applying u_plan[k] (N, n_mv) and d_plan[k] (N, n_dv) from z0 (M, nz)."""
        step, readout = self.step_function(), self.readout_function()
        n = u_plan.shape[0]
        z = np.asarray(z0, dtype=float).reshape(-1)
        y = np.empty((n, self.members, len(self.cv)))
        for k in range(n):
            z = np.asarray(step(z, u_plan[k], d_plan[k])).reshape(-1)
            y[k] = np.asarray(readout(z)).reshape(self.members, len(self.cv))
        return y


def _calibration(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n_cv: int) -> Calibration | None:
    """Return the interval calibration of a v2 export, None when it has none (v1, or a twin without one)."""
    if "calib/scale" not in arrays and "calib/floor" not in arrays:
        return None
    scale = np.asarray(arrays.get("calib/scale", np.zeros((0, 0))), dtype=float)
    if scale.ndim != 2 or scale.shape[1] != n_cv or scale.shape[0] < 1:
        raise ExportError(f"twin export array 'calib/scale' has shape {scale.shape}, expected (K >= 1, {n_cv})")
    scale, floor = _array(arrays, "calib/scale", scale.shape), _array(arrays, "calib/floor", (n_cv,))
    if np.any(scale <= 0) or np.any(floor < 0):
        raise ExportError("twin export calibration needs calib/scale > 0 and calib/floor >= 0 everywhere")
    coverage = (meta.get("calibration") or {}).get("coverage")
    if not isinstance(coverage, int | float) or not 0 < coverage < 1:
        raise ExportError(f"twin export meta calibration.coverage must be in (0, 1), got {coverage!r}")
    return Calibration(scale=scale, floor=floor, coverage=float(coverage))


def _ood(arrays: Mapping[str, np.ndarray], p: int) -> OodModel | None:
    """Return the OOD statistics of a v2 export, None when it has none."""
    if "ood/mean" not in arrays:
        return None
    q99 = _array(arrays, "ood/q99", (1,))
    if not q99[0] > 0:
        raise ExportError(f"twin export array 'ood/q99' must be > 0, got {q99[0]}")
    return OodModel(
        mean=_array(arrays, "ood/mean", (p,)), inv_cov=_array(arrays, "ood/inv_cov", (p, p)), q99=float(q99[0])
    )


def _array(arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise ExportError(f"twin export lacks array {key!r}")
    value = np.asarray(arrays[key], dtype=float)
    if value.shape != shape:
        raise ExportError(f"twin export array {key!r} has shape {value.shape}, expected {shape}")
    if not np.all(np.isfinite(value)):
        raise ExportError(f"twin export array {key!r} holds NaN or inf")
    return value


def _mlp(arrays: Mapping[str, np.ndarray], prefix: str, n_in: int, n_out: int) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    width = n_in
    while f"{prefix}/W{len(layers)}" in arrays:
        i = len(layers)
        w = np.asarray(arrays[f"{prefix}/W{i}"], dtype=float)
        if w.ndim != 2 or w.shape[1] != width:
            raise ExportError(f"{prefix}/W{i} has shape {w.shape}, expected (out, {width})")
        layers.append(Layer(_array(arrays, f"{prefix}/W{i}", w.shape), _array(arrays, f"{prefix}/b{i}", (w.shape[0],))))
        width = w.shape[0]
    if not layers:
        raise ExportError(f"twin export lacks {prefix}/W0")
    if width != n_out:
        raise ExportError(f"{prefix} ends with {width} outputs, expected {n_out}")
    return tuple(layers)
