"""Steady-state gain signs: the data's isolated MV steps against the twin's response to the same steps.

An isolated step is a run of rows in which one MV moves while every other MV holds, from PRE rows before it to
`settle` rows after it, with every row good. The data's response to it is the change of each CV from the PRE rows
before the step to the POST rows at the end of the settle window; it counts only where it exceeds what the CV does
over windows of the same length in which no MV moves at all (drift and noise). The twin's response to the same step
is its forecast with the recorded inputs minus its forecast with that MV held at its level before the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twins.data import TwinDataset
from twins.twin import Twin

PRE = 5  # rows averaged before a step: the level it starts from
POST = 5  # rows averaged at the end of the settle window: the level it reached
MIN_EVENTS = 3  # significant steps needed before the data is said to show a sign
CONSENSUS = 0.8  # share of those steps that must agree on the sign
NULL_QUANTILE = 0.95  # a CV change counts when it exceeds this quantile of changes with no MV moving
MOVE_FRACTION = 1e-3  # an MV moves at a row when it changes by more than this share of its range
MAX_EVENTS = 200  # most steps per MV scored (evenly spaced)


@dataclass(frozen=True)
class GainSign:
    """One (MV, CV) pair: the sign the data's steps show and the sign of the twin's response to them."""

    mv: str
    cv: str
    events: int  # isolated steps of the MV whose CV change is significant
    data_sign: int  # +1 or -1: the sign of dCV/dMV shown by at least CONSENSUS of them; 0 if none is shown
    twin_sign: int  # sign of the twin's median dCV/dMV over the same steps (0 when the data shows none)
    agrees: bool  # the data shows no sign, or the twin's sign is the data's


@dataclass(frozen=True)
class MvExcitation:
    """How much the record moves one MV: what a twin can learn its effect from."""

    mv: str
    moves: int  # runs of rows in which the MV changed
    isolated_steps: int  # of them, steps with every other MV held from PRE rows before to the settle window's end


def _moving(data: TwinDataset) -> np.ndarray:
    """Return (T, n_mv) True where an MV differs from the row before (row 0: False)."""
    mv, good = data.mv, data.mv_mask
    span = np.array([np.ptp(mv[good[:, j], j]) if good[:, j].any() else 0.0 for j in range(mv.shape[1])])
    step = np.abs(np.diff(mv, axis=0)) > MOVE_FRACTION * np.maximum(span, 1e-12)
    return np.concatenate([np.zeros((1, mv.shape[1]), bool), step], axis=0)


def step_events(data: TwinDataset, settle: int) -> list[tuple[int, int, int]]:
    """Return (first moving row, last moving row, MV index) of every isolated step."""
    moving, good = _moving(data), data.row_good()
    rows = len(data)
    any_moves = np.concatenate([[0], np.cumsum(moving.any(1))])
    bad = np.concatenate([[0], np.cumsum(~good)])
    events = []
    for j in range(moving.shape[1]):
        col = moving[:, j].astype(np.int8)
        starts = np.flatnonzero(np.diff(np.concatenate([[0], col])) == 1)
        ends = np.flatnonzero(np.diff(np.concatenate([col, [0]])) == -1)
        for s, e in zip(starts, ends, strict=True):
            lo, hi = s - PRE, e + settle + 1  # window rows [lo, hi)
            if lo < 0 or hi > rows or bad[hi] - bad[lo]:
                continue
            own = int(moving[s : e + 1, j].sum())
            if any_moves[hi] - any_moves[lo] != own or moving[s : e + 1].sum() != own:
                continue  # another MV moved in the window, or this one moved again
            events.append((int(s), int(e), j))
    return events


def excitation(data: TwinDataset, settle: int) -> list[MvExcitation]:
    """Count each MV's moves and isolated steps in the record."""
    moving = _moving(data).astype(np.int8)
    runs = (np.diff(np.concatenate([np.zeros((1, moving.shape[1]), np.int8), moving]), axis=0) == 1).sum(0)
    isolated = np.bincount([j for _, _, j in step_events(data, settle)], minlength=moving.shape[1])
    return [MvExcitation(n, int(runs[j]), int(isolated[j])) for j, n in enumerate(data.mv_names)]


def _levels(y: np.ndarray, first: np.ndarray, last: np.ndarray, settle: int) -> np.ndarray:
    """Return CV change from the PRE rows before `first` to the POST rows ending at last + settle: (N, n_cv)."""
    before = np.stack([y[f - PRE : f].mean(0) for f in first])
    after = np.stack([y[e + settle - POST + 1 : e + settle + 1].mean(0) for e in last])
    return after - before


def _null_threshold(data: TwinDataset, settle: int) -> np.ndarray:
    """Return per-CV change that quiet windows (no MV moving, all rows good) exceed with probability 1 - quantile."""
    moving, good = _moving(data).any(1), data.row_good()
    length = PRE + settle + 1
    quiet = np.convolve(good & ~moving, np.ones(length, int), "valid") == length  # windows [s, s + length)
    starts = np.flatnonzero(quiet) + PRE
    y = data.cv
    if starts.size >= 20:
        starts = starts[np.linspace(0, starts.size - 1, min(starts.size, 2000)).round().astype(int)]
        delta = np.abs(_levels(y, starts, starts, settle))
        return np.quantile(delta, NULL_QUANTILE, axis=0)
    # No quiet windows: noise alone, from first differences (robust scale), at about three sigma of a mean change.
    sigma = np.median(np.abs(np.diff(y[good], axis=0)), axis=0) / 0.6745 / np.sqrt(2)
    return 3.0 * sigma * np.sqrt(1 / PRE + 1 / POST)


@torch.no_grad()
def _twin_response(twin: Twin, data: TwinDataset, events: list[tuple[int, int, int]], settle: int) -> np.ndarray:
    """Return the twin's mean-over-members CV change caused by each step, normalised units: (N, n_cv)."""
    lt = twin.tensors(data)
    net, dev = twin.net, lt.u.device
    first = np.array([s for s, _, _ in events])
    last = np.array([e for _, e, _ in events])
    mvs = np.array([j for _, _, j in events])
    r0 = first - 1  # the latent is encoded at the row before the step; inputs from there on are rolled
    steps = int((last - r0).max()) + settle
    idx = torch.as_tensor(np.minimum(r0[:, None] + np.arange(steps), len(data) - 1), device=dev)  # (N, K)
    u, d = lt.u[idx], lt.d[idx]  # (N, K, n_mv), (N, K, n_dv)
    held = u.clone()
    n = torch.arange(len(events), device=dev)
    held[n, :, torch.as_tensor(mvs, device=dev)] = u[n, 0, torch.as_tensor(mvs, device=dev)].unsqueeze(-1)
    m = net.members
    z0 = net.encode_at(lt, torch.as_tensor(r0, device=dev))  # (M, N, nz)
    ends = torch.as_tensor(last - r0 + settle, device=dev)  # step index of each event's settle end
    window = ends.unsqueeze(-1) - torch.arange(POST, device=dev)  # (N, POST)
    out = []
    for inputs in (u, held):
        z = net.rollout(z0, inputs.expand(m, -1, -1, -1), d.expand(m, -1, -1, -1))  # (M, N, K + 1, nz)
        y = net.readout(z.flatten(1, 2)).view(m, len(events), steps + 1, -1).mean(0)  # (N, K + 1, n_cv)
        out.append(y[n.unsqueeze(-1), window].mean(1))  # (N, n_cv)
    return (out[0] - out[1]).double().cpu().numpy()


def gain_signs(twin: Twin, data: TwinDataset, settle: int | None = None) -> list[GainSign]:
    """Compare the twin's steady-state gain signs with those the record's isolated MV steps show, per (MV, CV)."""
    settle = settle or twin.config.horizon
    events = step_events(data, settle)
    per_mv: dict[int, list[tuple[int, int, int]]] = {}
    for ev in events:
        per_mv.setdefault(ev[2], []).append(ev)
    threshold = _null_threshold(data, settle)
    out = []
    for j, name in enumerate(data.mv_names):
        chosen = per_mv.get(j, [])
        if len(chosen) > MAX_EVENTS:
            chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, MAX_EVENTS).round().astype(int)]
        if chosen:
            first = np.array([s for s, _, _ in chosen])
            last = np.array([e for _, e, _ in chosen])
            du = data.mv[last, j] - data.mv[first - 1, j]  # (N,)
            dy = _levels(data.cv, first, last, settle)  # (N, n_cv)
            twin_dy = _twin_response(twin, data, chosen, settle)
        for c, cv in enumerate(data.cv_names):
            if not chosen:
                out.append(GainSign(name, cv, 0, 0, 0, True))
                continue
            sig = np.abs(dy[:, c]) > threshold[c]
            ratio = dy[sig, c] / du[sig]
            data_sign = 0
            if ratio.size >= MIN_EVENTS:
                share = max((ratio > 0).mean(), (ratio < 0).mean())
                data_sign = int(np.sign(np.median(ratio))) if share >= CONSENSUS else 0
            twin_sign = int(np.sign(np.median(twin_dy[sig, c] / du[sig]))) if data_sign else 0
            out.append(GainSign(name, cv, int(sig.sum()), data_sign, twin_sign, data_sign in (0, twin_sign)))
    return out
