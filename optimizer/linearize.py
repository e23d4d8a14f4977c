"""The twin's ensemble rolled out and linearised along a plan in numpy: all members at once, no CasADi calls.

The exact-replica proof stays with the CasADi functions of `TwinDynamics` (tests compare the two); this module is
the fast path the SQP uses every iteration: one batched matrix product per layer and step instead of a CasADi
function call per step, and the sensitivities of every member's CVs to the whole MV plan (the condensed dynamics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optimizer.dynamics import Layer, TwinDynamics

_ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "silu": lambda a: a / (1 + np.exp(-a)),
    "softplus": lambda a: np.logaddexp(0.0, a),
}


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * a))  # no overflow warnings for large |a|


# d act / d a, given the pre-activation a and the activation h = act(a)
_SLOPE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "tanh": lambda a, h: 1 - h**2,
    "silu": lambda a, h: _sigmoid(a) * (1 + a * (1 - _sigmoid(a))),
    "softplus": lambda a, h: _sigmoid(a),
}


@dataclass(frozen=True)
class Linearisation:
    """The exact twin along a plan U (n_mv, N): member CVs and their first derivatives with respect to U."""

    u: np.ndarray  # (n_mv, N) the plan, engineering units
    y: np.ndarray  # (N, M, n_cv) each member's CVs at the end of step k
    g: np.ndarray  # (N, M, n_cv, N * n_mv) d y[k] / d vec(U), vec step-major (index j * n_mv + i); zero for j > k
    z0: np.ndarray | None = None  # (M, nz) the latents now (a twin's only; None for a CasADi model)
    z: np.ndarray | None = None  # (M, nz, N) each member's latent at the end of step k
    gz: np.ndarray | None = None  # (N, nz, N * n_mv) d (member-mean latent at the end of step k) / d vec(U)
    # the prediction past the plan, its last setpoints (and forecast) held (the terminal tail; none when K = 0)
    y_tail: np.ndarray | None = None  # (K, M, n_cv) each member's CVs at the end of tail step j
    g_tail: np.ndarray | None = None  # (K, M, n_cv, N * n_mv) d y_tail[j] / d vec(U)


class EnsembleMlp:
    """One MLP per member, weights stacked over members: (M, out, in) per layer."""

    def __init__(self, stack: tuple[tuple[Layer, ...], ...], activation: str) -> None:
        self.weights = [np.stack([mlp[i].weight for mlp in stack]) for i in range(len(stack[0]))]  # (M, out, in)
        self.biases = [np.stack([mlp[i].bias for mlp in stack])[..., None] for i in range(len(stack[0]))]  # (M, out, 1)
        self.act, self.slope = _ACT[activation], _SLOPE[activation]

    def forward(self, x: np.ndarray, jacobian: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Return out (M, n_out, B) for inputs x (M, n_in, B) and, if asked, d out / d x (M, B, n_out, n_in)."""
        h, slopes = x, []
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = w @ h + b  # (M, out, B)
            if i < last:
                h = self.act(a)
                if jacobian:
                    slopes.append(self.slope(a, h))
            else:
                h = a
        if not jacobian:
            return h, None
        # chain rule from the output back: J = W_L diag(s_{L-1}) W_{L-1} ... diag(s_0) W_0, per member and column
        jac = np.broadcast_to(self.weights[-1][:, None], (h.shape[0], h.shape[2], *self.weights[-1].shape[1:]))
        for w, s in zip(reversed(self.weights[:-1]), reversed(slopes), strict=True):
            jac = (jac * np.swapaxes(s, 1, 2)[:, :, None, :]) @ w[:, None]  # (M, B, out, n)
        return h, jac


class NumpyTwin:
    """The twin's ensemble in numpy: rollouts and linearisations along a whole plan."""

    def __init__(self, dyn: TwinDynamics, tail: int = 0) -> None:
        self.dyn, self.tail = dyn, tail  # tail: steps predicted past a plan with its last setpoints held
        self.next = EnsembleMlp(dyn.next_layers, dyn.activation)
        self.readout = EnsembleMlp(dyn.readout_layers, dyn.activation)
        self.m, self.nz, self.n_mv, self.n_cv = dyn.members, dyn.nz, len(dyn.mv), len(dyn.cv)

    def _inputs(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Return the normalised inputs (n_mv + n_dv, N) for plan u (n_mv, N) and forecast d (n_dv, N)."""
        dyn = self.dyn
        u_n = (u - dyn.mv_mean[:, None]) / dyn.mv_std[:, None]
        return np.vstack([u_n, (d - dyn.dv_mean[:, None]) / dyn.dv_std[:, None]]) if len(dyn.dv) else u_n

    def _cvs(self, z: np.ndarray) -> np.ndarray:
        """Return CVs (N, M, n_cv) in engineering units of latents z (M, nz, N)."""
        y, _ = self.readout.forward(z)
        return np.transpose(y, (2, 0, 1)) * self.dyn.cv_std + self.dyn.cv_mean

    def readout_now(self, z0: np.ndarray) -> np.ndarray:
        """Return each member's CVs (M, n_cv) read from latents z0 (M*nz,)."""
        return self._cvs(np.asarray(z0, dtype=float).reshape(self.m, self.nz, 1))[0]

    def rollout(self, z0: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Return each member's CVs (N + tail, M, n_cv) under plan u (n_mv, N), forecast d (n_dv, N), from z0 (M*nz,).

        The last `tail` rows continue past the plan with its last setpoints and forecast held.
        """
        return self._cvs(self.latents(z0, u, d, tail=self.tail))

    def latents(self, z0: np.ndarray, u: np.ndarray, d: np.ndarray, tail: int = 0) -> np.ndarray:
        """Return each member's latents (M, nz, N + tail) at the end of each step of plan u (then held) from z0."""
        x_ud = self._inputs(u, d)
        n = u.shape[1]
        z = np.asarray(z0, dtype=float).reshape(self.m, self.nz, 1)
        zs = np.empty((self.m, self.nz, n + tail))
        for k in range(n + tail):
            at = min(k, n - 1)  # past the plan its last setpoints are held
            ud = np.broadcast_to(x_ud[None, :, at : at + 1], (self.m, x_ud.shape[0], 1))
            step, _ = self.next.forward(np.concatenate([z, ud], axis=1))
            z = z + step
            zs[:, :, k] = z[:, :, 0]
        return zs

    def linearise(self, z0: np.ndarray, u: np.ndarray, d: np.ndarray) -> Linearisation:
        """Return the rollout along plan u and every member CV's sensitivity to the whole plan (condensed).

        With a tail, the rollout continues `tail` steps past the plan with its last setpoints held: their
        sensitivities to those held setpoints accumulate in the plan's last step.
        """
        x_ud = self._inputs(u, d)
        n, m, nz, n_mv, tail = u.shape[1], self.m, self.nz, self.n_mv, self.tail
        z = np.asarray(z0, dtype=float).reshape(m, nz, 1)
        zs = np.empty((m, nz, n + tail))
        sens = np.zeros((m, nz, n * n_mv))  # d z_k / d vec(U), carried forward
        sens_all = np.empty((n + tail, m, nz, n * n_mv))
        scale_u = 1.0 / self.dyn.mv_std  # inputs enter normalised
        for k in range(n + tail):
            at = min(k, n - 1)  # past the plan its last setpoints are held
            ud = np.broadcast_to(x_ud[None, :, at : at + 1], (m, x_ud.shape[0], 1))
            step, jac = self.next.forward(np.concatenate([z, ud], axis=1), jacobian=True)
            assert jac is not None
            j = jac[:, 0]  # (M, nz, nz + n_mv + n_dv)
            # z_{k+1} = z_k + step(z_k, u_k): d/dU = (I + J_z) d z_k/dU + J_u e_k
            if k:
                sens = sens + j[:, :, :nz] @ sens
            sens[:, :, at * n_mv : (at + 1) * n_mv] += j[:, :, nz : nz + n_mv] * scale_u
            z = z + step
            zs[:, :, k] = z[:, :, 0]
            sens_all[k] = sens
        y_n, c = self.readout.forward(zs, jacobian=True)
        assert c is not None
        c = np.swapaxes(c, 0, 1) * self.dyn.cv_std[:, None]  # (N, M, n_cv, nz) in engineering units
        g = c @ sens_all  # (N + tail, M, n_cv, N * n_mv)
        y = np.transpose(y_n, (2, 0, 1)) * self.dyn.cv_std + self.dyn.cv_mean
        z_now = np.asarray(z0, dtype=float).reshape(m, nz)
        return Linearisation(
            u=np.array(u, dtype=float),
            y=y[:n],
            g=g[:n],
            z0=z_now,
            z=zs[:, :, :n],
            gz=sens_all[:n].mean(axis=1),
            y_tail=y[n:] if tail else None,
            g_tail=g[n:] if tail else None,
        )
