"""DV forecasts: hold (the baseline, measured in the same run) against decay toward the mean (optimizer.disturbances).

Run: `twinops bench dv_forecast --json [--quick]`. Each record's DVs are fitted on its first FIT_SHARE (the fit
chooses hold or decay on its own last quarter) and scored on the rest, which the fit never sees: the RMSE of
forecasting h steps ahead from every good sample, at h = 1, 5, 20 and HORIZON (the recommender's MPC horizon) and
averaged over 1..HORIZON, for hold, for the fitted forecast, and for decay with phi from the lag-1
autocorrelation alone (what issue 12 asked for first), so the choice between the two estimates is visible.
Records: the DVs of both demo lines' simulated histories (plantsim, `twinops demo`'s generator, seed 0, default
realism: sensor noise, drift, faults), the SRU's two feed gas flows (u1, u4; disturbance-like per its SOURCE.md)
and the BibMon historian extract's 108 tags, all DVs as the tests onboard it (strings and gaps as NaN).
"""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench.twin import shared_data
from optimizer.disturbances import _phis, dv_forecast_fit, multistep_rmse
from plantsim import heat_train, vdv_reactor
from plantsim.history import generate_history

HORIZON = 30  # the recommender's default MPC horizon (at most 30 steps)
STEPS = (1, 5, 20, HORIZON)
FIT_SHARE = 0.6


def _scores(d: np.ndarray, mean: float, phi: float) -> dict[str, float | None]:
    """Return the RMSE at STEPS and averaged over 1..HORIZON of forecasting d (T,) with (mean, phi)."""
    at = multistep_rmse(d, mean, phi, STEPS)
    every = multistep_rmse(d, mean, phi, range(1, HORIZON + 1))
    out: dict[str, float | None] = {
        f"h{h}": (float(v) if np.isfinite(v) else None) for h, v in zip(STEPS, at, strict=True)
    }
    out[f"mean_1_{HORIZON}"] = float(np.nanmean(every)) if np.isfinite(every).any() else None
    return out


def score_record(values: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Fit on the first FIT_SHARE of values (T, n_dv), score hold, the fit and lag-1 decay on the rest."""
    split = int(round(len(values) * FIT_SHARE))
    fit, test = values[:split], values[split:]
    model = dv_forecast_fit(fit, names, HORIZON)
    per_dv: dict[str, Any] = {}
    for i, name in enumerate(names):
        mu = float(np.nanmean(fit[:, i])) if np.isfinite(fit[:, i]).any() else 0.0
        lag1 = _phis(fit[:, i], mu).get("decay (lag-1)", 1.0)
        per_dv[name] = {
            "method": model.method[i],
            "phi": float(model.phi[i]),
            "why": model.why[i],
            "hold": _scores(test[:, i], 0.0, 1.0),
            "forecast": _scores(test[:, i], float(model.mean[i]), float(model.phi[i])),
            "lag1_decay": _scores(test[:, i], mu, lag1),
        }
    key = f"mean_1_{HORIZON}"

    def ratio(kind: str) -> float | None:
        pairs = [(v[kind][key], v["hold"][key]) for v in per_dv.values() if v["hold"][key]]
        pairs = [(a, b) for a, b in pairs if a is not None and b]
        return float(np.median([a / b for a, b in pairs])) if pairs else None

    return {
        "rows": len(values),
        "fit_rows": split,
        "decay_chosen": sum(m != "hold" for m in model.method),
        "dvs": len(names),
        "median_rmse_ratio_forecast_over_hold": ratio("forecast"),
        "median_rmse_ratio_lag1_over_hold": ratio("lag1_decay"),
        "worst_rmse_ratio_forecast_over_hold": max(
            (v["forecast"][key] / v["hold"][key] for v in per_dv.values() if v["hold"][key] and v["forecast"][key]),
            default=None,
        ),
        "per_dv": per_dv,
    }


def _demo_line(line_id: str, days: float) -> tuple[np.ndarray, list[str]]:
    history = generate_history(line_id, days=days, start=datetime(2026, 1, 1, tzinfo=UTC), seed=0)
    names = list(history.line.names("DV"))
    return history.values[:, [history.columns.index(n) for n in names]], names


def _sru() -> tuple[np.ndarray, list[str]]:
    raw = np.loadtxt(shared_data() / "sru" / "SRU_data.txt", skiprows=1)
    return raw[:, [0, 3]], ["u1_mea_gas_flow", "u4_sws_gas_flow"]


def _bibmon() -> tuple[np.ndarray, list[str]]:
    with gzip.open(shared_data() / "bibmon_real_process" / "real_process_data.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")[1:]
        rows = []
        for line in f:
            cells = line.rstrip("\n").split(",")[1:]
            rows.append([_number(c) for c in cells])
    return np.array(rows, dtype=float), header


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # 'Bad', 'Inp OutRange', 'Scan Timeout', empty


def run(*, quick: bool = False) -> dict[str, Any]:
    """Score hold against the fitted DV forecast on every record; return the figures."""
    clock = time.perf_counter()
    days = 1.0 if quick else 4.0  # `twinops demo` backfills 4 days
    records = {
        "vdv-reactor": lambda: _demo_line(vdv_reactor.LINE_ID, days),
        "heat-train": lambda: _demo_line(heat_train.LINE_ID, days),
        "sru": _sru,
        "bibmon": _bibmon,
    }
    out: dict[str, Any] = {"horizon": HORIZON, "steps": list(STEPS), "fit_share": FIT_SHARE, "quick": quick}
    for name, load in records.items():
        try:
            values, names = load()
        except FileNotFoundError as exc:
            out[name] = {"skipped": f"no data: {exc.filename}"}
            continue
        out[name] = score_record(values, names)
    out["run_s"] = time.perf_counter() - clock
    return out
