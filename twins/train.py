"""Training of a twin: JEPA latent rollouts + CV rollouts + VICReg, an ensemble with bootstrap, best-on-val."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from twins.config import TwinConfig
from twins.data import DataSplit, Normalisation, check_trainable, usable_starts
from twins.estimation import OFFSET_HORIZON, OFFSET_SCALE, MheSettings, choose_estimator
from twins.innovation import fit_innovation_limits
from twins.model import EnsembleMLP, TwinNet
from twins.twin import TrainingInfo, Twin
from twins.uncertainty import calibrate_intervals, calibration_rows, fit_ood, input_range, net_forecast, spaced
from twins.windows import LineTensors, line_tensors

ProgressCallback = Callable[[int, int, dict[str, float]], None]
PhaseCallback = Callable[[str], None]  # told the name of each step after the epochs, as it begins (<= 32 characters)
CALIBRATING, ESTIMATOR, FAULT_THRESHOLDS = (
    "calibrating the intervals",
    "choosing the state estimate",
    "fitting fault thresholds",
)


def rollout_losses(
    net: TwinNet,
    target: EnsembleMLP,
    lt: LineTensors,
    t: torch.Tensor,
    horizon: int,
    keep_from: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Return per-member losses (M,) of open-loop rollouts from starts t: (M, B)."""
    m, b = t.shape
    rows = t.unsqueeze(-1) + torch.arange(horizon + 1, device=t.device)  # (M, B, H + 1)
    # float32 latents: under bf16 autocast the residual sum over long rollouts would lose precision.
    z0 = net.encode(lt.windows(t, keep_from)).float()  # (M, B, nz)
    z = net.rollout(z0, lt.u[rows[..., :-1]], lt.d[rows[..., :-1]])  # (M, B, H + 1, nz)
    # After a bad MV/DV sample the recorded input is a guess, so later steps leave the loss.
    alive = torch.cumprod(lt.in_ok[rows[..., :-1]], dim=-1)
    alive = torch.cat([torch.ones_like(alive[..., :1]), alive], dim=-1)  # (M, B, H + 1)

    y_hat = net.readout(z.flatten(1, 2)).view(m, b, horizon + 1, -1)  # (M, B, H + 1, n_cv)
    w_cv = lt.y_mask[rows] * alive.unsqueeze(-1)
    cv = (w_cv * (y_hat.float() - lt.y[rows]) ** 2).sum((1, 2, 3)) / w_cv.sum((1, 2, 3)).clamp(min=1)

    with torch.no_grad():
        z_tgt = target(lt.windows(rows[..., 1:].flatten(1))).view(m, b, horizon, -1)  # (M, B, H, nz)
    w_lat = alive[..., 1:] * lt.y_mask[rows[..., 1:]].amin(-1)  # (M, B, H)
    lat_err = ((z[:, :, 1:].float() - z_tgt.float()) ** 2).mean(-1)
    latent = (w_lat * lat_err).sum((1, 2)) / w_lat.sum((1, 2)).clamp(min=1)

    zc = z0.float() - z0.float().mean(1, keepdim=True)  # (M, B, nz)
    var = torch.relu(1.0 - torch.sqrt(zc.var(1) + 1e-4)).mean(-1)
    cov = zc.transpose(1, 2) @ zc / max(b - 1, 1)  # (M, nz, nz)
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
    covl = (off**2).sum((1, 2)) / cov.shape[-1]
    return {"cv": cv, "latent": latent, "var": var, "cov": covl}


def _val_rows(split: DataSplit, config: TwinConfig) -> np.ndarray:
    good = split.dataset.row_good()[: split.val_stop]
    starts = usable_starts(good, config.window, config.horizon, config.min_good_fraction)
    return spaced(starts[starts >= split.train_stop], config.val_windows)


def train_twin(
    split: DataSplit,
    config: TwinConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    device: str | None = None,
    cpu_threads: int | None = 1,
    on_phase: PhaseCallback | None = None,
) -> Twin:
    """Train an ensemble twin on the training split, select weights on validation, calibrate, and return it.

    on_progress is called after each epoch; on_phase as each step after the epochs begins (on the demo's heat train
    these steps and the evaluation took 5 minutes after 8 of epochs, on one core).
    """
    # The batched matmuls are small: one thread is about as fast as two and avoids OpenMP stalls on a busy host.
    previous = torch.get_num_threads()
    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    try:
        return _train(split, config or TwinConfig(), on_progress, device, on_phase or (lambda _: None))
    finally:
        torch.set_num_threads(previous)


def _train(
    split: DataSplit,
    config: TwinConfig,
    on_progress: ProgressCallback | None,
    device: str | None,
    on_phase: PhaseCallback,
) -> Twin:
    starts = check_trainable(split, config)
    clock = time.perf_counter()
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = split.dataset
    norm = Normalisation.fit(data, split.train_stop)
    lt = line_tensors(data, norm, config.window, device=dev)
    net = TwinNet(config, len(data.cv_names), len(data.mv_names), len(data.dv_names)).to(dev)
    target = copy.deepcopy(net.encoder).requires_grad_(False)
    m, w, h = config.members, config.window, config.horizon

    gen = torch.Generator().manual_seed(config.seed + 1)
    pool = torch.as_tensor(starts)
    # Each member trains on its own bootstrap resample of the usable windows.
    boot = pool[torch.randint(len(pool), (m, len(pool)), generator=gen)]  # (M, N)
    val = torch.as_tensor(_val_rows(split, config), device=dev)
    best_val = torch.full((m,), math.inf)
    best = {k: v.detach().clone() for k, v in net.state_dict().items()}

    total = config.epochs * config.steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / total)))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda") else nullcontext()
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        net.train()
        sums = {"loss": 0.0, "cv": 0.0, "latent": 0.0, "var": 0.0, "cov": 0.0}
        for _ in range(config.steps_per_epoch):
            t = boot.gather(1, torch.randint(boot.shape[1], (m, config.batch_size), generator=gen))  # (M, B)
            hide = torch.rand(m, config.batch_size, generator=gen) < config.history_dropout
            keep = torch.where(hide, torch.randint(0, w, (m, config.batch_size), generator=gen), 0)
            with amp:
                parts = rollout_losses(net, target, lt, t.to(dev), h, keep.to(dev))
            loss = (
                config.w_cv * parts["cv"]
                + config.w_latent * parts["latent"]
                + config.w_var * parts["var"]
                + config.w_cov * parts["cov"]
            ).sum()  # members are independent, so the sum trains each on its own loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip * math.sqrt(m))
            opt.step()
            sched.step()
            with torch.no_grad():
                for p_t, p_o in zip(target.parameters(), net.encoder.parameters(), strict=True):
                    p_t.lerp_(p_o, 1.0 - config.ema_decay)
            sums["loss"] += float(loss.detach()) / m
            for k, v in parts.items():
                sums[k] += float(v.detach().mean())
        losses = {k: v / config.steps_per_epoch for k, v in sums.items()}
        if val.numel():
            net.eval()
            with torch.no_grad(), amp:
                val_cv = rollout_losses(net, target, lt, val.expand(m, -1), h)["cv"].float().cpu()
            losses["val_cv"] = float(val_cv.mean())
            improved = val_cv < best_val
            best_val = torch.where(improved, val_cv, best_val)
            for k, v in net.state_dict().items():
                if k.startswith(("encoder", "predictor", "readout_net")):
                    best[k][improved.to(v.device)] = v.detach()[improved.to(v.device)]
        history.append(losses)
        if on_progress is not None:
            on_progress(epoch + 1, config.epochs, losses)
    if val.numel():
        net.load_state_dict(best)
    net = net.float().eval()

    # The statistics of the trained net, all fitted before the twin is built.
    on_phase(CALIBRATING)
    calibration = calibrate_intervals(net_forecast(net), config, split, lt)
    ood, z_mean, z_std = fit_ood(net, split, lt)
    seconds = time.perf_counter() - clock
    twin = Twin(
        net=net,
        config=config,
        norm=norm,
        cv_names=data.cv_names,
        mv_names=data.mv_names,
        dv_names=data.dv_names,
        sample_period_s=data.sample_period_s,
        calibration=calibration,
        ood=ood,
        z_mean=z_mean,
        z_std=z_std,
        input_range=input_range(split),
        info=TrainingInfo(seconds, dev, data.sha256(0, split.train_stop), split.train_stop, history),
    )
    on_phase(ESTIMATOR)
    _choose_estimator(twin, split, lt)
    on_phase(FAULT_THRESHOLDS)
    twin.innovation = fit_innovation_limits(twin, split, lt)  # needs the calibrated twin: fitted last
    return twin


def _choose_estimator(twin: Twin, split: DataSplit, lt: LineTensors) -> None:
    """Keep a moving-horizon latent estimate if it forecasts better on validation; then refit what it changes.

    The offset-free fit (a constant CV offset beside the latent, over OFFSET_HORIZON samples) is tried first, the plain
    fit next (twins.estimation).

    The calibration and the OOD statistics were fitted on the encoder's latents: with the estimate kept, the states
    the platform scores are the estimate's, so both are refitted on it (the estimate's measurement weights stay the
    encoder calibration's 1-step errors it was chosen with; its prior stays the encoder's latent spread).
    """
    config = twin.config
    rows = spaced(calibration_rows(split, config)[0], config.eval_starts)
    noise = tuple(float(v) for v in twin.calibration.floor)
    candidates = [  # offset-free first: a plant drifts after training, and validation cannot show that
        MheSettings(horizon=OFFSET_HORIZON, noise=noise, offset_scale=OFFSET_SCALE),
        MheSettings(noise=noise),
    ]
    twin.estimator, twin.estimator_choice = choose_estimator(twin, lt, rows, candidates)
    if twin.estimator is None:
        return
    twin.calibration = calibrate_intervals(twin.forecast_normalised, config, split, lt)
    twin.ood = fit_ood(twin.net, split, lt, lambda lt_, r: twin.encode(split.dataset, r, lt_))[0]
