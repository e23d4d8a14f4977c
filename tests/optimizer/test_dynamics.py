"""The CasADi replica of the twin equals the documented export semantics, numpy and torch alike."""

from __future__ import annotations

import casadi as ca
import numpy as np
import pytest
import torch

from optimizer import ExportError, TwinDynamics
from tests.optimizer.exports import numpy_rollout, random_export


@pytest.mark.parametrize("activation", ["tanh", "silu", "softplus"])
def test_the_casadi_replica_equals_a_numpy_forward_pass_of_the_documented_format(activation: str, rng) -> None:
    meta, arrays = random_export(seed=3, activation=activation, members=3, nz=5, hidden=12, depth=2)
    dyn = TwinDynamics.from_export(meta, arrays)
    for _ in range(3):
        z0 = rng.normal(size=(3, 5))
        u = arrays["norm/mv_mean"] + arrays["norm/mv_std"] * rng.normal(size=(7, 2))
        d = arrays["norm/dv_mean"] + arrays["norm/dv_std"] * rng.normal(size=(7, 1))
        expected = numpy_rollout(meta, arrays, z0, u, d)
        assert np.max(np.abs(dyn.rollout(z0, u, d) - expected)) < 1e-6


def test_the_casadi_replica_equals_torch_layers_built_from_the_same_arrays(rng) -> None:
    meta, arrays = random_export(seed=4, activation="silu", members=2, nz=3, hidden=10, depth=3, dv=())
    dyn = TwinDynamics.from_export(meta, arrays)

    def torch_mlp(prefix: str) -> torch.nn.Sequential:
        count = sum(1 for k in arrays if k.startswith(prefix + "/W"))
        layers: list[torch.nn.Module] = []
        for i in range(count):
            w = arrays[f"{prefix}/W{i}"]
            lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
            lin.weight.data, lin.bias.data = torch.tensor(w), torch.tensor(arrays[f"{prefix}/b{i}"])
            layers += [lin, torch.nn.SiLU()] if i < count - 1 else [lin]
        return torch.nn.Sequential(*layers)

    z0 = rng.normal(size=(2, 3))
    u = arrays["norm/mv_mean"] + rng.normal(size=(5, 2))
    with torch.no_grad():
        for k in range(2):
            z = torch.tensor(z0[k])
            for t in range(5):
                u_n = torch.tensor((u[t] - arrays["norm/mv_mean"]) / arrays["norm/mv_std"])
                z = z + torch_mlp(f"m{k}/next")(torch.cat([z, u_n]))
                y = torch_mlp(f"m{k}/readout")(z).numpy() * arrays["norm/cv_std"] + arrays["norm/cv_mean"]
                assert np.max(np.abs(dyn.rollout(z0, u[: t + 1], np.zeros((t + 1, 0)))[t, k] - y)) < 1e-6


def test_the_exported_linearisation_equals_casadi_automatic_derivatives(rng) -> None:
    meta, arrays = random_export(seed=5, activation="softplus", members=2, nz=4, hidden=9)
    dyn = TwinDynamics.from_export(meta, arrays)
    lin = dyn.linearization_function()
    z, u, d = ca.MX.sym("z", 8), ca.MX.sym("u", 2), ca.MX.sym("d", 1)
    z_next = dyn.step_function()(z, u, d)
    auto_step = ca.Function("auto", [z, u, d], [z_next, ca.jacobian(z_next, z), ca.jacobian(z_next, u)])
    auto_readout = ca.Function("auto_y", [z], [ca.jacobian(dyn.readout_function()(z), z)])
    args = (rng.normal(size=8), arrays["norm/mv_mean"] + rng.normal(size=2), arrays["norm/dv_mean"])
    _, a, b, _, c = (np.asarray(v) for v in lin(*args))
    zn, jz, ju = (np.asarray(v) for v in auto_step(*args))
    jy = np.asarray(auto_readout(zn))
    for k in range(2):
        block = slice(4 * k, 4 * k + 4)
        assert np.allclose(a[:, block], jz[block, block], atol=1e-9)
        assert np.allclose(c[:, block], jy[2 * k : 2 * k + 2, block], atol=1e-9)
    assert np.allclose(b, ju, atol=1e-9)


def test_the_twins_package_export_is_rebuilt_to_torch_precision() -> None:
    from twins import TwinConfig, TwinDataset, export_arrays, split_by_time, train_twin

    rng = np.random.default_rng(0)
    rows = 600
    feed = np.repeat(rng.uniform(0.5, 1.5, rows // 20), 20)[:, None]
    level = np.zeros((rows, 1))
    for t in range(rows - 1):
        level[t + 1] = level[t] + 0.1 * (feed[t] - level[t])
    data = TwinDataset.from_arrays(
        cv=level + 0.01 * rng.normal(size=level.shape),
        mv=feed,
        dv=np.zeros((rows, 0)),
        cv_names=["level_m"],
        mv_names=["feed_m3_h"],
        dv_names=[],
        sample_period_s=10.0,
    )
    config = TwinConfig(
        window=8,
        nz=4,
        hidden=16,
        depth=2,
        members=3,
        horizon=10,
        epochs=1,
        steps_per_epoch=2,
        batch_size=16,
        val_windows=16,
        eval_starts=50,
        min_train_samples=100,
        activation="tanh",
    )
    twin = train_twin(split_by_time(data), config)
    twin.net.double()
    meta, arrays = export_arrays(twin)
    dyn = TwinDynamics.from_export(meta, arrays)
    z0 = rng.normal(size=(3, 1, 4))  # (M, N=1, nz)
    u = rng.uniform(0.5, 1.5, size=(6, 1))
    z, torch_y = z0, []
    for t in range(6):
        z = twin.next(z, u[t : t + 1], np.zeros((1, 0)))
        torch_y.append(twin.readout(z)[:, 0])  # (M, n_cv)
    assert np.max(np.abs(dyn.rollout(z0[:, 0], u, np.zeros((6, 0))) - np.array(torch_y))) < 1e-6


def test_an_export_of_another_version_is_refused_with_a_clear_error() -> None:
    meta, arrays = random_export()
    with pytest.raises(ExportError, match="version 3 is not supported"):
        TwinDynamics.from_export({**meta, "version": 3}, arrays)


def test_an_export_of_another_format_is_refused() -> None:
    meta, arrays = random_export()
    with pytest.raises(ExportError, match="not a twin export"):
        TwinDynamics.from_export({**meta, "format": "onnx"}, arrays)


def test_an_export_with_a_mis_shaped_array_is_refused_naming_the_array() -> None:
    meta, arrays = random_export()
    with pytest.raises(ExportError, match="norm/cv_std"):
        TwinDynamics.from_export(meta, {**arrays, "norm/cv_std": np.ones(5)})
    with pytest.raises(ExportError, match="m1/next/W1"):
        TwinDynamics.from_export(meta, {**arrays, "m1/next/W1": np.ones((16, 3))})


@pytest.mark.parametrize("activation", ["tanh", "silu", "softplus"])
def test_the_numpy_linearisation_along_a_plan_equals_the_casadi_replica_and_its_derivatives(
    activation: str, rng
) -> None:
    from optimizer.linearize import NumpyTwin

    meta, arrays = random_export(seed=6, activation=activation, members=3, nz=4, hidden=10)
    dyn = TwinDynamics.from_export(meta, arrays)
    n = 6
    z0 = rng.normal(size=(3, 4))
    u = arrays["norm/mv_mean"][:, None] + rng.normal(size=(2, n))  # (n_mv, N)
    d = arrays["norm/dv_mean"][:, None] + rng.normal(size=(1, n))
    lin = NumpyTwin(dyn).linearise(z0.reshape(-1), u, d)
    assert np.max(np.abs(lin.y - dyn.rollout(z0, u.T, d.T))) < 1e-9
    # d y / d U against CasADi's automatic derivatives of the whole rollout
    zs, us, ds = ca.MX.sym("z", 12), ca.MX.sym("u", 2, n), ca.MX.sym("d", 1, n)
    y = dyn.readout_function().map(n)(dyn.step_function().mapaccum(n)(zs, us, ds))  # (M*n_cv, N)
    jac = np.asarray(ca.Function("j", [zs, us, ds], [ca.jacobian(ca.vec(y), ca.vec(us))])(z0.reshape(-1), u, d))
    expected = jac.reshape(n, 3, 2, 2 * n)  # rows: step, member, CV
    assert np.max(np.abs(lin.g - expected)) < 1e-9
    assert np.all(lin.g[0, :, :, 2:] == 0)  # causal: the first CVs do not depend on later moves
