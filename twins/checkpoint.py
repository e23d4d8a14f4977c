"""Checkpoints: weights, config, normalisation and statistics in one file with a versioned, hashed header."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twins.config import TwinConfig
from twins.data import Normalisation
from twins.estimation import MheSettings
from twins.model import TwinNet
from twins.twin import Calibration, InnovationLimits, OodStats, TrainingInfo, Twin

MAGIC = b"TWINOPS-TWIN-CHECKPOINT\n"
CHECKPOINT_FORMAT = "twinops-twin-checkpoint"
SCHEMA_VERSION = 1


class CheckpointError(ValueError):
    """Raised when a checkpoint cannot be loaded; the message says why."""


class CorruptCheckpointError(CheckpointError):
    """The file is damaged: bad header, truncated, hash mismatch or unreadable body."""


class IncompatibleCheckpointError(CheckpointError):
    """The file is intact but written by another format or schema version, or its contents do not fit."""


def _arr(t: Any) -> np.ndarray:
    return t.double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _payload(twin: Twin) -> dict[str, Any]:
    def tensors(d: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in d.items()}

    info = twin.info
    return {
        "config": twin.config.to_dict(),
        "names": {"cv": list(twin.cv_names), "mv": list(twin.mv_names), "dv": list(twin.dv_names)},
        "sample_period_s": float(twin.sample_period_s),
        "norm": tensors(asdict(twin.norm)),
        "calibration": {
            **tensors({"floor": twin.calibration.floor, "scale": twin.calibration.scale}),
            "source": twin.calibration.source,
            # optional: twins calibrated before the adaptive band have none
            **(
                {}
                if twin.calibration.error_quantile is None
                else tensors({"error_quantile": twin.calibration.error_quantile})
            ),
        },
        "ood": {**tensors({"mean": twin.ood.mean, "inv_cov": twin.ood.inv_cov}), "q99": float(twin.ood.q99)},
        "latent": tensors({"z_mean": twin.z_mean, "z_std": twin.z_std}),
        "input_range": tensors(twin.input_range),
        "info": {
            "seconds": info.seconds,
            "device": info.device,
            "data_sha256": info.data_sha256,
            "train_rows": info.train_rows,
            "history": info.history,
        },
        "state_dict": {k: v.detach().cpu() for k, v in twin.net.state_dict().items()},
        **_innovation_payload(twin.innovation),
        # optional: twins trained before the state estimator was chosen have none (and use the encoder)
        **({} if twin.estimator_choice is None else {"estimator_choice": json.dumps(twin.estimator_choice)}),
        **({} if twin.estimator is None else {"estimator": twin.estimator.to_dict()}),
    }


def _innovation_payload(limits: InnovationLimits | None) -> dict[str, Any]:
    """Return the innovation limits' entry of a payload; none for a twin without them (an optional key of schema 1)."""
    if limits is None:
        return {}
    return {
        "innovation": {
            "lookback": int(limits.lookback),
            "false_alarm_rate": float(limits.false_alarm_rate),
            "combined": float(limits.combined),
            "per_cv": torch.as_tensor(np.asarray(limits.per_cv, dtype=np.float64)),
            "source": limits.source,
            "samples": int(limits.samples),
        }
    }


def _innovation(p: dict[str, Any] | None) -> InnovationLimits | None:
    """Rebuild the innovation limits of a payload; None for checkpoints written before they existed."""
    if p is None:
        return None
    return InnovationLimits(
        lookback=int(p["lookback"]),
        false_alarm_rate=float(p["false_alarm_rate"]),
        combined=float(p["combined"]),
        per_cv=_arr(p["per_cv"]),
        source=str(p["source"]),
        samples=int(p["samples"]),
    )


def _calibration(p: dict[str, Any]) -> Calibration:
    """Rebuild the interval calibration of a payload; without error_quantile for checkpoints from before it."""
    quantile = p.get("error_quantile")
    return Calibration(
        _arr(p["floor"]), _arr(p["scale"]), str(p["source"]), None if quantile is None else _arr(quantile)
    )


def save_checkpoint(twin: Twin, path: str | Path) -> None:
    """Write a twin to path: magic line, JSON header with schema version and body SHA-256, torch body."""
    buf = io.BytesIO()
    torch.save(_payload(twin), buf)
    body = buf.getvalue()
    header = {
        "format": CHECKPOINT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "data_sha256": twin.info.data_sha256,
    }
    Path(path).write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + body)


def _read(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise CorruptCheckpointError(f"{path} is not a TwinOps twin checkpoint: the magic header line is missing")
    end = raw.find(b"\n", len(MAGIC))
    try:
        header = json.loads(raw[len(MAGIC) : end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"{path}: the checkpoint header is not valid JSON ({exc})") from exc
    if header.get("format") != CHECKPOINT_FORMAT:
        raise IncompatibleCheckpointError(f"{path}: format {header.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    if header.get("schema_version") != SCHEMA_VERSION:
        raise IncompatibleCheckpointError(
            f"{path}: schema version {header.get('schema_version')!r}, this code reads version {SCHEMA_VERSION}"
        )
    body = raw[end + 1 :]
    if len(body) != header.get("body_bytes"):
        raise CorruptCheckpointError(
            f"{path} is truncated: body has {len(body)} bytes, header says {header.get('body_bytes')}"
        )
    if hashlib.sha256(body).hexdigest() != header.get("body_sha256"):
        raise CorruptCheckpointError(f"{path}: body SHA-256 does not match the header; the file was altered or damaged")
    try:
        payload: dict[str, Any] = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable pickles
        raise CorruptCheckpointError(f"{path}: the checkpoint body cannot be read ({exc})") from exc
    return payload


def load_checkpoint(path: str | Path) -> Twin:
    """Load a twin saved by save_checkpoint; raise CheckpointError saying why if it is corrupt or incompatible."""
    path = Path(path)
    p = _read(path)
    try:
        config = TwinConfig.from_dict(p["config"])
        names = p["names"]
        net = TwinNet(config, len(names["cv"]), len(names["mv"]), len(names["dv"]))
        net.load_state_dict(p["state_dict"], strict=True)
        info = p["info"]
        return Twin(
            net=net.float(),
            config=config,
            norm=Normalisation(**{k: _arr(v) for k, v in p["norm"].items()}),
            cv_names=tuple(names["cv"]),
            mv_names=tuple(names["mv"]),
            dv_names=tuple(names["dv"]),
            sample_period_s=float(p["sample_period_s"]),
            calibration=_calibration(p["calibration"]),
            ood=OodStats(_arr(p["ood"]["mean"]), _arr(p["ood"]["inv_cov"]), float(p["ood"]["q99"])),
            z_mean=_arr(p["latent"]["z_mean"]),
            z_std=_arr(p["latent"]["z_std"]),
            input_range={k: _arr(v) for k, v in p["input_range"].items()},
            info=TrainingInfo(
                float(info["seconds"]),
                str(info["device"]),
                str(info["data_sha256"]),
                int(info["train_rows"]),
                list(info["history"]),
            ),
            innovation=_innovation(p.get("innovation")),
            estimator=None if p.get("estimator") is None else MheSettings.from_dict(p["estimator"]),
            estimator_choice=None if p.get("estimator_choice") is None else json.loads(p["estimator_choice"]),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise IncompatibleCheckpointError(f"{path}: contents do not fit this version of twins ({exc})") from exc
