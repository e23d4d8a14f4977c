"""The twin's networks: an ensemble of encode / next / readout, batched over members."""

from __future__ import annotations

import math

import torch
from torch import nn

from twins.config import TwinConfig
from twins.windows import LineTensors

_ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU, "softplus": nn.Softplus}


class EnsembleLinear(nn.Module):
    """M independent Linear layers applied in one batched matmul."""

    def __init__(self, members: int, d_in: int, d_out: int, generator: torch.Generator, gain: float = 1.0) -> None:
        super().__init__()
        bound = gain / math.sqrt(d_in)
        self.weight = nn.Parameter((torch.rand(members, d_out, d_in, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(members, d_out, generator=generator) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply member k's layer to x[k]: (M, N, in) -> (M, N, out)."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class EnsembleMLP(nn.Module):
    """Plain Linear layers with an activation after every layer except the last."""

    def __init__(
        self, members: int, sizes: list[int], activation: str, generator: torch.Generator, last_gain: float = 1.0
    ) -> None:
        super().__init__()
        n = len(sizes) - 1
        self.layers = nn.ModuleList(
            EnsembleLinear(members, sizes[i], sizes[i + 1], generator, last_gain if i == n - 1 else 1.0)
            for i in range(n)
        )
        self.act = _ACTIVATIONS[activation]()

    def linears(self) -> list[EnsembleLinear]:
        """Return the Linear layers in order."""
        return [layer for layer in self.layers if isinstance(layer, EnsembleLinear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (M, N, in) -> (M, N, out)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


class TwinNet(nn.Module):
    """Ensemble world model in normalised units: z_t = encode(window), z_{t+1} = next(z_t, u_t, d_t), y = readout(z)."""

    def __init__(self, config: TwinConfig, n_cv: int, n_mv: int, n_dv: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(config.seed)
        m, hid, nz = config.members, [config.hidden] * config.depth, config.nz
        self.members = m
        feat = 2 * (n_cv + n_mv + n_dv)  # values and masks
        self.n_cv, self.n_mv, self.n_dv = n_cv, n_mv, n_dv
        self.encoder = EnsembleMLP(m, [config.window * feat, *hid, nz], config.activation, gen)
        # A small last layer starts the predictor near z_{t+1} = z_t, which keeps early long rollouts stable.
        self.predictor = EnsembleMLP(m, [nz + n_mv + n_dv, *hid, nz], config.activation, gen, last_gain=0.1)
        self.readout_net = EnsembleMLP(m, [nz, *hid, n_cv], config.activation, gen)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """Infer latents from flattened history windows: (M, N, W * F) -> (M, N, nz)."""
        return self.encoder(windows)

    def next(self, z: torch.Tensor, u: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Step the latent one sample: (M, N, nz), (M, N, n_mv), (M, N, n_dv) -> (M, N, nz)."""
        return z + self.predictor(torch.cat([z, u, d], dim=-1))

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents to normalised CVs: (M, N, nz) -> (M, N, n_cv)."""
        return self.readout_net(z)

    def rollout(self, z: torch.Tensor, u: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Roll open loop over given inputs: (M, N, nz), (M, N, H, n_mv), (M, N, H, n_dv) -> (M, N, H + 1, nz)."""
        zs = [z]
        for k in range(u.shape[2]):
            z = self.next(z, u[:, :, k], d[:, :, k])
            zs.append(z)
        return torch.stack(zs, dim=2)

    def encode_at(self, lt: LineTensors, rows: torch.Tensor) -> torch.Tensor:
        """Infer every member's latent at rows of a record from the history up to them: (N,) -> (M, N, nz)."""
        win = lt.windows(rows)  # (N, W * F)
        return self.encode(win.expand(self.members, *win.shape))

    def forecast(self, lt: LineTensors, rows: torch.Tensor, steps: int) -> torch.Tensor:
        """Roll every member from rows with the recorded inputs: (N,) -> (M, N, steps + 1, n_cv) normalised."""
        m = self.members
        z0 = self.encode_at(lt, rows)  # (M, N, nz)
        idx = rows.unsqueeze(-1) + torch.arange(steps, device=rows.device)  # (N, steps)
        u, d = lt.u[idx].expand(m, -1, -1, -1), lt.d[idx].expand(m, -1, -1, -1)
        z = self.rollout(z0, u, d)  # (M, N, steps + 1, nz)
        return self.readout(z.flatten(1, 2)).view(m, len(rows), steps + 1, -1)
