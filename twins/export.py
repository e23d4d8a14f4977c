"""Export of a twin as plain arrays for the optimizer, per docs/twin-export.md (format version 2)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from twins.twin import Twin

EXPORT_FORMAT = "twinops-twin-export"
EXPORT_VERSION = 2  # 2 adds the interval calibration (calib/*) and the OOD statistics (ood/*)


def export_arrays(model: Twin) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return (meta, arrays): the JSON-able description and float64 arrays the optimizer rebuilds the twin from."""
    cfg, norm = model.config, model.norm
    meta: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "nz": cfg.nz,
        "cv": list(model.cv_names),
        "mv": list(model.mv_names),
        "dv": list(model.dv_names),
        "members": cfg.members,
        "activation": cfg.activation,
        "sample_period_s": float(model.sample_period_s),
        "calibration": {"coverage": float(cfg.interval), "source": model.calibration.source},
    }
    arrays: dict[str, np.ndarray] = {
        "norm/cv_mean": norm.cv_mean,
        "norm/cv_std": norm.cv_std,
        "norm/mv_mean": norm.mv_mean,
        "norm/mv_std": norm.mv_std,
        "norm/dv_mean": norm.dv_mean,
        "norm/dv_std": norm.dv_std,
        "train/mv_min": model.input_range["mv_min"],
        "train/mv_max": model.input_range["mv_max"],
        "train/dv_min": model.input_range["dv_min"],
        "train/dv_max": model.input_range["dv_max"],
        "train/z_mean": model.z_mean,
        "train/z_std": model.z_std,
        "calib/scale": model.calibration.scale,  # (K, n_cv) per step ahead, h = 0..K-1
        "calib/floor": model.calibration.floor,  # (n_cv,) normalised
        "ood/mean": model.ood.mean,  # (nz + n_mv + n_dv,)
        "ood/inv_cov": model.ood.inv_cov,
        "ood/q99": np.array([model.ood.q99]),
    }
    for part, mlp in (("next", model.net.predictor), ("readout", model.net.readout_net)):
        for i, layer in enumerate(mlp.linears()):
            weight = layer.weight.detach().double().cpu().numpy()  # (M, out, in)
            bias = layer.bias.detach().double().cpu().numpy()  # (M, out)
            for k in range(cfg.members):
                arrays[f"m{k}/{part}/W{i}"] = weight[k]
                arrays[f"m{k}/{part}/b{i}"] = bias[k]
    return meta, {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}


def save_export(model: Twin, path: str | Path) -> None:
    """Write the export as one .npz with the meta as a JSON string under "__meta__"."""
    meta, arrays = export_arrays(model)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
    Path(path).write_bytes(buf.getvalue())
