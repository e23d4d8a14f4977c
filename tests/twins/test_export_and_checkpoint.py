"""Export follows docs/twin-export.md exactly; checkpoints round-trip and refuse damage with a reason."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from twins import (
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    MheSettings,
    TrainingOutcome,
    TwinConfig,
    export_arrays,
    load_checkpoint,
    save_checkpoint,
    save_export,
    split_by_time,
    train_twin,
)

NP_ACT = {
    "tanh": np.tanh,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(0.0, x),
}


def mlp(arrays: dict[str, np.ndarray], prefix: str, act, x: np.ndarray) -> np.ndarray:
    """Apply an exported MLP per the documented semantics."""
    layers = sum(1 for k in arrays if k.startswith(f"{prefix}/W"))
    for i in range(layers):
        x = arrays[f"{prefix}/W{i}"] @ x + arrays[f"{prefix}/b{i}"]
        if i < layers - 1:
            x = act(x)
    return x


def numpy_rollout(meta: dict, arrays: dict[str, np.ndarray], z0: np.ndarray, u: np.ndarray, d: np.ndarray):
    """Roll member k from z0[k] over inputs (H, n_mv), (H, n_dv) in engineering units: -> (M, H + 1, n_cv)."""
    act = NP_ACT[meta["activation"]]
    out = []
    for k in range(meta["members"]):
        z, ys = z0[k], []
        for step in range(len(u) + 1):
            y = mlp(arrays, f"m{k}/readout", act, z) * arrays["norm/cv_std"] + arrays["norm/cv_mean"]
            ys.append(y)
            if step < len(u):
                un = (u[step] - arrays["norm/mv_mean"]) / arrays["norm/mv_std"]
                dn = (d[step] - arrays["norm/dv_mean"]) / arrays["norm/dv_std"]
                z = z + mlp(arrays, f"m{k}/next", act, np.concatenate([z, un, dn]))
        out.append(ys)
    return np.array(out)


@pytest.mark.parametrize("activation", ["tanh", "silu", "softplus"])
def test_a_numpy_forward_pass_of_the_export_equals_the_torch_twin(tanks, quick: TwinConfig, activation: str) -> None:
    data = tanks(1500, 4)
    config = dataclasses.replace(quick, epochs=1, steps_per_epoch=3, activation=activation)
    twin = train_twin(split_by_time(data), config)
    twin.net.double()  # the contract is float64
    meta, arrays = export_arrays(twin)
    rows = np.array([1100, 1200])
    z0 = twin.encode(data, rows)  # (M, N, nz)
    torch_members = twin.predict(data, rows, 12).members  # (M, N, 13, n_cv)
    for n, t in enumerate(rows):
        mine = numpy_rollout(meta, arrays, z0[:, n], data.mv[t : t + 12], data.dv[t : t + 12])
        assert np.max(np.abs(mine - torch_members[:, n])) < 1e-6


def test_the_export_has_the_documented_keys_shapes_and_meta(trained: TrainingOutcome) -> None:
    twin = trained.twin
    meta, arrays = export_arrays(twin)
    cfg = twin.config
    assert meta == {
        "format": "twinops-twin-export",
        "version": 2,
        "nz": cfg.nz,
        "cv": ["upper_level_m", "lower_level_m"],
        "mv": ["pump_flow_m3_h"],
        "dv": ["leak_m3_h"],
        "members": 5,
        "activation": "tanh",
        "sample_period_s": 10.0,
        "calibration": {"coverage": cfg.interval, "source": twin.calibration.source},
    }
    json.dumps(meta)
    assert all(a.dtype == np.float64 for a in arrays.values())
    assert arrays["norm/cv_mean"].shape == (2,) and arrays["norm/dv_std"].shape == (1,)
    assert arrays["train/z_mean"].shape == (5, cfg.nz) and arrays["train/z_std"].shape == (5, cfg.nz)
    assert arrays["m4/next/W0"].shape == (cfg.hidden, cfg.nz + 2)
    assert arrays[f"m0/next/W{cfg.depth}"].shape == (cfg.nz, cfg.hidden)
    assert arrays[f"m0/readout/b{cfg.depth}"].shape == (2,)
    assert arrays["train/mv_min"][0] >= 0.5 and arrays["train/mv_max"][0] <= 1.5
    assert not np.array_equal(arrays["m0/next/W0"], arrays["m1/next/W0"])  # members differ
    assert np.array_equal(arrays["calib/scale"], twin.calibration.scale) and arrays["calib/floor"].shape == (2,)
    p = cfg.nz + 2
    assert arrays["ood/mean"].shape == (p,) and arrays["ood/inv_cov"].shape == (p, p)
    assert arrays["ood/q99"] == pytest.approx([twin.ood.q99])


def test_the_export_saves_as_one_npz_with_the_meta_as_json(trained: TrainingOutcome, tmp_path: Path) -> None:
    save_export(trained.twin, tmp_path / "twin.npz")
    with np.load(tmp_path / "twin.npz") as saved:
        meta = json.loads(str(saved["__meta__"]))
        assert meta["version"] == 2
        assert np.array_equal(saved["m2/readout/W0"], export_arrays(trained.twin)[1]["m2/readout/W0"])


def test_a_checkpoint_round_trip_gives_the_same_twin(trained: TrainingOutcome, tmp_path: Path) -> None:
    save_checkpoint(trained.twin, tmp_path / "twin.ckpt")
    loaded = load_checkpoint(tmp_path / "twin.ckpt")
    data, rows = trained.split.dataset, np.array([2600, 2700])
    assert np.array_equal(loaded.predict(data, rows, 10).upper, trained.twin.predict(data, rows, 10).upper)
    assert loaded.config == trained.twin.config
    assert loaded.info.data_sha256 == trained.twin.info.data_sha256 == data.sha256(0, trained.split.train_stop)
    assert np.array_equal(loaded.norm.cv_std, trained.twin.norm.cv_std)


def test_a_damaged_checkpoint_is_refused_with_the_reason(trained: TrainingOutcome, tmp_path: Path) -> None:
    path = tmp_path / "twin.ckpt"
    save_checkpoint(trained.twin, path)
    raw = path.read_bytes()
    flipped = bytearray(raw)
    flipped[-100] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptCheckpointError, match="SHA-256 does not match"):
        load_checkpoint(path)
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(b"PK\x03\x04 not a twin")
    with pytest.raises(CorruptCheckpointError, match="not a TwinOps twin checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_from_another_schema_version_is_refused(trained: TrainingOutcome, tmp_path: Path) -> None:
    path = tmp_path / "twin.ckpt"
    save_checkpoint(trained.twin, path)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"schema_version": 1', b'"schema_version": 99', 1))
    with pytest.raises(IncompatibleCheckpointError, match="schema version 99, this code reads version 1"):
        load_checkpoint(path)


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_refused(trained: TrainingOutcome, tmp_path: Path) -> None:
    twin = copy.deepcopy(trained.twin)
    twin.config = dataclasses.replace(twin.config, nz=twin.config.nz + 1)  # a mismatch a hand edit could cause
    save_checkpoint(twin, tmp_path / "twin.ckpt")
    with pytest.raises(IncompatibleCheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "twin.ckpt")


def test_a_twin_that_keeps_the_latent_estimate_keeps_it_through_a_checkpoint(
    trained: TrainingOutcome, tmp_path: Path
) -> None:
    twin = copy.copy(trained.twin)
    twin.estimator = MheSettings(horizon=6, noise=tuple(float(v) for v in twin.calibration.floor), offset_scale=3.0)
    save_checkpoint(twin, tmp_path / "twin.ckpt")
    loaded = load_checkpoint(tmp_path / "twin.ckpt")
    assert loaded.estimator == twin.estimator and loaded.estimator_choice == twin.estimator_choice
    data, rows = trained.split.dataset, np.array([2600, 2700])
    np.testing.assert_array_equal(loaded.predict(data, rows, 10).mean, twin.predict(data, rows, 10).mean)
    assert not np.allclose(loaded.predict(data, rows, 10).mean, trained.twin.predict(data, rows, 10).mean)
    # the forecast carries the fitted CV offset; the plan's reading (offset=False) does not
    assert not np.allclose(loaded.predict(data, rows, 10).mean, loaded.predict(data, rows, 10, offset=False).mean)
