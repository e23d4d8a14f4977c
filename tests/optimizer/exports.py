"""Twin exports built for the tests, per docs/twin-export.md, and an independent numpy forward pass of the format."""

from __future__ import annotations

from typing import Any

import numpy as np

Export = tuple[dict[str, Any], dict[str, np.ndarray]]


def random_export(
    *,
    seed: int = 0,
    members: int = 3,
    nz: int = 4,
    hidden: int = 16,
    depth: int = 2,
    cv: tuple[str, ...] = ("T", "C"),
    mv: tuple[str, ...] = ("F", "Q"),
    dv: tuple[str, ...] = ("T_in",),
    activation: str = "tanh",
    step_gain: float = 0.3,
) -> Export:
    """Return a random, well-scaled export: depth hidden layers of `hidden` units in predictor and readout."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}

    def mlp(prefix: str, dims: list[int], last_gain: float) -> None:
        for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            gain = last_gain if i == len(dims) - 2 else 1.5
            arrays[f"{prefix}/W{i}"] = rng.normal(size=(n_out, n_in)) * gain / np.sqrt(n_in)
            arrays[f"{prefix}/b{i}"] = rng.normal(size=n_out) * 0.2

    for k in range(members):
        mlp(f"m{k}/next", [nz + len(mv) + len(dv), *[hidden] * depth, nz], step_gain)
        mlp(f"m{k}/readout", [nz, *[hidden] * depth, len(cv)], 1.0)
    for role, names in (("cv", cv), ("mv", mv), ("dv", dv)):
        arrays[f"norm/{role}_mean"] = rng.uniform(5, 50, size=len(names))
        arrays[f"norm/{role}_std"] = rng.uniform(0.5, 3.0, size=len(names))
    arrays["train/mv_min"] = arrays["norm/mv_mean"] - 2 * arrays["norm/mv_std"]
    arrays["train/mv_max"] = arrays["norm/mv_mean"] + 2 * arrays["norm/mv_std"]
    arrays["train/dv_min"] = arrays["norm/dv_mean"] - 2 * arrays["norm/dv_std"]
    arrays["train/dv_max"] = arrays["norm/dv_mean"] + 2 * arrays["norm/dv_std"]
    arrays["train/z_mean"], arrays["train/z_std"] = np.zeros((members, nz)), np.ones((members, nz))
    meta = {
        "format": "twinops-twin-export",
        "version": 1,
        "nz": nz,
        "cv": list(cv),
        "mv": list(mv),
        "dv": list(dv),
        "members": members,
        "activation": activation,
        "sample_period_s": 30.0,
    }
    return meta, arrays


def first_order_export(*, rate: float = 0.5, members: int = 2) -> Export:
    """Return a linear twin with one MV F and one CV C: C follows F with first-order lag `rate` per step."""
    arrays: dict[str, np.ndarray] = {}
    for k in range(members):
        arrays[f"m{k}/next/W0"] = np.array([[-rate, rate]])  # z_next = z + rate * (F - z)
        arrays[f"m{k}/next/b0"] = np.zeros(1)
        arrays[f"m{k}/readout/W0"] = np.ones((1, 1))  # C = z
        arrays[f"m{k}/readout/b0"] = np.zeros(1)
    for role, n in (("cv", 1), ("mv", 1), ("dv", 0)):
        arrays[f"norm/{role}_mean"], arrays[f"norm/{role}_std"] = np.zeros(n), np.ones(n)
    arrays["train/mv_min"], arrays["train/mv_max"] = np.zeros(1), np.full(1, 10.0)
    arrays["train/dv_min"], arrays["train/dv_max"] = np.zeros(0), np.zeros(0)
    arrays["train/z_mean"], arrays["train/z_std"] = np.zeros((members, 1)), np.ones((members, 1))
    meta = {
        "format": "twinops-twin-export",
        "version": 1,
        "nz": 1,
        "cv": ["C"],
        "mv": ["F"],
        "dv": [],
        "members": members,
        "activation": "tanh",
        "sample_period_s": 60.0,
    }
    return meta, arrays


_ACT = {
    "tanh": np.tanh,
    "silu": lambda x: x / (1 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(0.0, x),
}


def numpy_rollout(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], z0: np.ndarray, u_plan: np.ndarray, d_plan: np.ndarray
) -> np.ndarray:
    """Return y (N, M, n_cv) after each step, straight from the documented semantics (no optimizer code)."""
    act = _ACT[meta["activation"]]

    def mlp(prefix: str, x: np.ndarray) -> np.ndarray:
        n_layers = sum(1 for key in arrays if key.startswith(prefix + "/W"))
        for i in range(n_layers):
            x = arrays[f"{prefix}/W{i}"] @ x + arrays[f"{prefix}/b{i}"]
            if i < n_layers - 1:
                x = act(x)
        return x

    u_n = (u_plan - arrays["norm/mv_mean"]) / arrays["norm/mv_std"]
    d_n = (d_plan - arrays["norm/dv_mean"]) / arrays["norm/dv_std"]
    out = np.empty((u_plan.shape[0], meta["members"], len(meta["cv"])))
    for k in range(meta["members"]):
        z = np.array(z0[k], dtype=float)
        for t in range(u_plan.shape[0]):
            z = z + mlp(f"m{k}/next", np.concatenate([z, u_n[t], d_n[t]]))
            out[t, k] = mlp(f"m{k}/readout", z) * arrays["norm/cv_std"] + arrays["norm/cv_mean"]
    return out
